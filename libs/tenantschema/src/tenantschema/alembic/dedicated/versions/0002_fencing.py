"""Fencing: tenant_fences and tenantdb_enter() (see tenantschema.fencing_ddl).

Revision ID: dedicated_0002
Revises: dedicated_0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op
from tenantschema.fencing_ddl import create_fencing, drop_fencing
from tenantschema.migrations import configured_app_role

revision: str = "dedicated_0002"
down_revision: str | None = "dedicated_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in create_fencing(configured_app_role()):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_fencing():
        op.execute(statement)
