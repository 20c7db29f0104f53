"""A stopping outbox relay gives its partition leases back at once (`outbox_release`, executable only
by the relay's role; tenantschema.outbox_ddl.create_relay_release).

Revision ID: shared_0009_relay_release
Revises: shared_0008_migrator_keyset
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema.outbox_ddl import create_relay_release, drop_relay_release

revision: str = "shared_0009_relay_release"
down_revision: str | None = "shared_0008_migrator_keyset"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in create_relay_release():
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_relay_release():
        op.execute(statement)
