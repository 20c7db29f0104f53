"""The usage service's tables (tenantschema.usage) and its role's grants on them; usage may also read
`tenants.compliance_isolation` (a migration trigger).

Revision ID: platform_0005_usage
Revises: platform_0004_roles
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema import roles, usage
from tenantschema.render import quote_ident

revision: str = "platform_0005_usage"
down_revision: str | None = "platform_0004_roles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Version 1 of these tables is what tenantschema.usage declares today; copy the definitions here
    # before the first revision that changes them.
    usage.metadata.create_all(op.get_bind(), tables=[usage.metadata.tables[t] for t in usage.USAGE_TABLES])
    service = quote_ident(roles.USAGE.name)
    migrator = quote_ident(roles.MIGRATOR.name)
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON usage_offsets, usage_monthly, usage_thresholds TO {service}")
    op.execute(f"GRANT SELECT, INSERT, DELETE ON usage_seen_events TO {service}")
    op.execute(f"GRANT SELECT (compliance_isolation) ON tenants TO {service}")
    op.execute(f"GRANT SELECT ON usage_thresholds, usage_monthly TO {migrator}")


def downgrade() -> None:
    service = quote_ident(roles.USAGE.name)
    op.execute(f"REVOKE SELECT (compliance_isolation) ON tenants FROM {service}")  # noqa: S608
    for table in reversed(usage.USAGE_TABLES):
        op.execute(f"DROP TABLE {table}")
