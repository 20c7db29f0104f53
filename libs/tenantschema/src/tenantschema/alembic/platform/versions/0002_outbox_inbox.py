"""The tenancy service's transactional outbox and consumers' inbox in the platform database.

Revision ID: platform_0002
Revises: platform_0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op
from tenantschema.migrations import configured_app_role
from tenantschema.outbox_ddl import create_inbox, create_outbox, drop_outbox

revision: str = "platform_0002"
down_revision: str | None = "platform_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in [
        *create_outbox(configured_app_role(), tenant_scoped_rls=False),
        *create_inbox(configured_app_role()),
    ]:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE inbox")
    for statement in drop_outbox():
        op.execute(statement)
