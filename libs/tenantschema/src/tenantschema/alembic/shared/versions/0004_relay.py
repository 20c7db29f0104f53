"""The outbox relay's protocol in the shared database: partition leases and lease-checked claim and settle
functions executable only by the relay's own role, outbox_relay (tenantschema.outbox_ddl).

Revision ID: shared_0004_relay
Revises: shared_0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema.migrations import configured_app_role
from tenantschema.outbox_ddl import create_relay_protocol, drop_relay_protocol

revision: str = "shared_0004_relay"
down_revision: str | None = "shared_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in create_relay_protocol(configured_app_role()):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_relay_protocol(configured_app_role()):
        op.execute(statement)
