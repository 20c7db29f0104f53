"""The service roles (tenantschema.roles) on the shared database.

Nothing is granted to them directly here: every service reaches tenant rows through its membership in
app_user (DML under RLS, outbox INSERT, tenantdb_enter), whose grants shared_0001..0003 made. This
revision makes sure the roles exist, belong to app_user and carry their timeouts, and may connect, so
the shared history is complete on its own (the platform history does the same; both are idempotent).

Revision ID: shared_0005_roles
Revises: shared_0004_relay
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema import roles
from tenantschema.migrations import configured_app_role

revision: str = "shared_0005_roles"
down_revision: str | None = "shared_0004_relay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in [
        *roles.ensure_roles_ddl(configured_app_role()),
        roles.grant_connect_ddl(configured_app_role()),
    ]:
        op.execute(statement)


def downgrade() -> None:
    # The roles are cluster-wide and granted nothing of their own here: nothing to undo.
    pass
