"""Least privilege on the platform database: one role per service (tenantschema.roles).

app_user (the group every service role belongs to) keeps reading the directory columns of `tenants`
and the plans, and its outbox/inbox grants; it loses every write on `tenants`, `subscription_plans`,
`tenant_usage_metrics` and `tenant_migrations`. Only tenancy writes tenants and plans; usage may
update the two usage columns; the migrator only the placement columns.

Revision ID: platform_0004_roles
Revises: platform_0003_relay
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from tenantschema import roles
from tenantschema.migrations import configured_app_role
from tenantschema.render import quote_ident

revision: str = "platform_0004_roles"
down_revision: str | None = "platform_0003_relay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WRITABLE_BEFORE = ("subscription_plans", "tenants", "tenant_usage_metrics", "tenant_migrations")
# What usage's thresholds and the migrator's placement plan read, beyond the directory columns.
_USAGE_READS = ("plan", "product_count", "monthly_requests", "created_at")
_MIGRATOR_READS = ("plan", "product_count", "monthly_requests", "compliance_isolation", "updated_at")


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(columns)


def grant_statements(app_role: str) -> list[str]:
    app = quote_ident(app_role)
    tenancy = quote_ident(roles.TENANCY.name)
    usage = quote_ident(roles.USAGE.name)
    migrator = quote_ident(roles.MIGRATOR.name)
    service_roles = ", ".join(quote_ident(r.name) for r in roles.SERVICE_ROLES)
    return [
        *roles.ensure_roles_ddl(app_role),
        roles.grant_connect_ddl(app_role),
        # Start from nothing on these tables, then grant exactly what each role needs.
        *(f"REVOKE ALL ON {table} FROM {app}, {service_roles}" for table in _WRITABLE_BEFORE),
        f"GRANT SELECT ({_columns(roles.DIRECTORY_COLUMNS)}) ON tenants TO {app}",
        f"GRANT SELECT ON subscription_plans TO {app}",
        f"GRANT SELECT, INSERT, UPDATE ON tenants, subscription_plans TO {tenancy}",
        f"GRANT SELECT ({_columns(_USAGE_READS)}) ON tenants TO {usage}",
        f"GRANT UPDATE ({_columns(roles.USAGE_COLUMNS)}) ON tenants TO {usage}",
        f"GRANT SELECT, INSERT, UPDATE ON tenant_usage_metrics TO {usage}",
        f"GRANT SELECT ({_columns(_MIGRATOR_READS)}) ON tenants TO {migrator}",
        f"GRANT UPDATE ({_columns(roles.PLACEMENT_COLUMNS)}) ON tenants TO {migrator}",
        f"GRANT SELECT, INSERT, UPDATE ON tenant_migrations TO {migrator}",
        f"GRANT SELECT ON tenant_usage_metrics TO {migrator}",
    ]


def upgrade() -> None:
    for statement in grant_statements(configured_app_role()):
        op.execute(statement)


def downgrade() -> None:
    # Back to platform_0001's grants. The roles stay: they are cluster-wide (the shared database's
    # history names them too).
    app = quote_ident(configured_app_role())
    service_roles = ", ".join(quote_ident(r.name) for r in roles.SERVICE_ROLES)
    for table in _WRITABLE_BEFORE:
        op.execute(f"REVOKE ALL ON {table} FROM {service_roles}")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app}")
