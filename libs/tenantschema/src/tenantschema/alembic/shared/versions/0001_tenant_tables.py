"""Tenant tables, version 1 (shared variant), rendered from tenantschema.declarations.V1.

Revision ID: shared_0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from tenantschema.declarations import V1
from tenantschema.migrations import configured_app_role
from tenantschema.tenant_ddl import create_tenant_tables, drop_tenant_tables

revision: str = "shared_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_tenant_tables(V1, "shared", configured_app_role())


def downgrade() -> None:
    drop_tenant_tables(V1)
