"""The split-brain guard (tenantschema.guard_ddl): a statement trigger on every tenant table refuses
writes for a tenant fenced in this database, whoever sends them.

Revision ID: shared_0007_migrator
Revises: shared_0005_roles
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema.guard_ddl import create_guard, drop_guard

revision: str = "shared_0007_migrator"
down_revision: str | None = "shared_0005_roles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in create_guard("shared"):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_guard():
        op.execute(statement)
