"""Platform tables and the seeded subscription plans.

Revision ID: platform_0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import insert
from tenantschema import platform
from tenantschema.migrations import configured_app_role
from tenantschema.render import quote_ident

revision: str = "platform_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    # Nothing has shipped yet, so version 1 is what tenantschema.platform declares today. Before the
    # first revision that changes these tables, copy today's definitions into this file.
    platform.metadata.create_all(bind)
    bind.execute(insert(platform.subscription_plans), [dict(plan) for plan in platform.PLAN_SEED])
    role = quote_ident(configured_app_role())
    for table in platform.PLATFORM_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")


def downgrade() -> None:
    for table in reversed(platform.PLATFORM_TABLES):
        op.execute(f"DROP TABLE {table}")
