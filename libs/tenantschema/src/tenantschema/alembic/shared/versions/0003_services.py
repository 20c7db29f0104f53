"""Services' tables: inbox (processed_events), orders' product read model, per-tenant sequences,
idempotency keys (declarations.ADDED_IN_V2), and the transactional outbox.

Revision ID: shared_0003
Revises: shared_0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op
from tenantschema.declarations import ADDED_IN_V2
from tenantschema.migrations import configured_app_role
from tenantschema.outbox_ddl import create_outbox, drop_outbox
from tenantschema.tenant_ddl import create_tenant_tables, drop_tenant_tables

revision: str = "shared_0003"
down_revision: str | None = "shared_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_tenant_tables(ADDED_IN_V2, "shared", configured_app_role())
    for statement in create_outbox(configured_app_role(), tenant_scoped_rls=True):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_outbox():
        op.execute(statement)
    drop_tenant_tables(ADDED_IN_V2)
