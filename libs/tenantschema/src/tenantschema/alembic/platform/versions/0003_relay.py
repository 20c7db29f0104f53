"""The outbox relay's protocol in the platform database: partition leases, lease-checked claim and
settle functions executable only by the relay's own role (outbox_relay), and the registry of leftover
sweeps over dedicated databases (tenantschema.outbox_ddl).

Revision ID: platform_0003_relay
Revises: platform_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema.migrations import configured_app_role
from tenantschema.outbox_ddl import (
    create_relay_protocol,
    create_sweep_registry,
    drop_relay_protocol,
    drop_sweep_registry,
)

revision: str = "platform_0003_relay"
down_revision: str | None = "platform_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in [*create_relay_protocol(configured_app_role()), *create_sweep_registry()]:
        op.execute(statement)


def downgrade() -> None:
    for statement in [*drop_sweep_registry(), *drop_relay_protocol(configured_app_role())]:
        op.execute(statement)
