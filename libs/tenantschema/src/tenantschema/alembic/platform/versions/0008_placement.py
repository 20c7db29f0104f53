"""Automatic placement: `placement_decisions` (tenantschema.placement), one row per decision on a
trigger; `tenant_migrations` gains the scheduling columns (`trigger`, `priority`, `not_before`,
`attempt`). The migrator's role may read and insert decisions (never change one: they are a record).

`IF NOT EXISTS` on the columns: platform_0001 creates `tenant_migrations` from the current
declarations (tenantschema.platform), so a database built from base already has them.

Revision ID: platform_0008_placement
Revises: platform_0007_relay_release
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema import placement, roles
from tenantschema.render import quote_ident

revision: str = "platform_0008_placement"
down_revision: str | None = "platform_0007_relay_release"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("trigger", "varchar(40)"),
    ("priority", "integer NOT NULL DEFAULT 0"),
    ("not_before", "timestamptz"),
    ("attempt", "integer NOT NULL DEFAULT 1"),
)


def upgrade() -> None:
    for name, definition in _COLUMNS:
        op.execute(f"ALTER TABLE tenant_migrations ADD COLUMN IF NOT EXISTS {name} {definition}")
    # Version 1 of the table is what tenantschema.placement declares today; copy the definition here
    # before the first revision that changes it.
    placement.metadata.create_all(op.get_bind())
    migrator = quote_ident(roles.MIGRATOR.name)
    op.execute(f"GRANT SELECT, INSERT ON placement_decisions TO {migrator}")


def downgrade() -> None:
    for table in reversed(placement.PLACEMENT_TABLES):
        op.execute(f"DROP TABLE {table}")
    for name, _ in reversed(_COLUMNS):
        op.execute(f"ALTER TABLE tenant_migrations DROP COLUMN IF EXISTS {name}")
