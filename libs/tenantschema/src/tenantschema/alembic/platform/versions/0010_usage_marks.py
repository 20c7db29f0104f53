"""usage's per-counter marks (tenantschema.usage.usage_counter_marks): `api.requests_counted` events
are deduplicated by the highest sequence applied per (counter, tenant) instead of a row per event.

Revision ID: platform_0010_usage_marks
Revises: platform_0008_placement
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema import roles, usage
from tenantschema.render import quote_ident

revision: str = "platform_0010_usage_marks"
down_revision: str | None = "platform_0008_placement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    usage.usage_counter_marks.create(op.get_bind())
    service = quote_ident(roles.USAGE.name)
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON usage_counter_marks TO {service}")


def downgrade() -> None:
    op.execute("DROP TABLE usage_counter_marks")
