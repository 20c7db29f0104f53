"""The split-brain guard (tenantschema.guard_ddl): a statement trigger on every tenant table refuses
writes for a tenant fenced in this database, whoever sends them.

Revision ID: dedicated_0005_migrator
Revises: dedicated_0004_relay
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema.guard_ddl import create_guard, drop_guard

revision: str = "dedicated_0005_migrator"
down_revision: str | None = "dedicated_0004_relay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in create_guard("dedicated"):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_guard():
        op.execute(statement)
