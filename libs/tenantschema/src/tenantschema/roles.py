"""The database roles of the platform, declared once, and what each may do.

One login role per service, each a member of the group role `app_user` that the RLS policies and the
generic grants name (tenant tables' DML under RLS, outbox INSERT, `tenantdb_enter`). What sets a
service apart is granted to its own role, by the `*_roles` Alembic revisions:

- `app_user` (the group; also a login for tools): on platform, SELECT of the directory columns of
  `tenants`, SELECT on `subscription_plans`, outbox INSERT and the inbox; on shared, the tenant
  tables' DML under RLS, outbox INSERT and `tenantdb_enter`.
- `tenancy_service`: `tenants` and `subscription_plans` SELECT, INSERT, UPDATE (deletes are soft).
- `catalog_service`, `orders_service`: app_user's grants only (the directory columns suffice).
- `usage_service`: UPDATE of `tenants.product_count`/`monthly_requests`, SELECT of the columns its
  thresholds read (compliance_isolation included); `tenant_usage_metrics`, `usage_offsets`,
  `usage_monthly`, `usage_thresholds` SELECT, INSERT, UPDATE; `usage_seen_events` SELECT, INSERT,
  DELETE (pruning); `usage_counter_marks` SELECT, INSERT, UPDATE, DELETE.
- `migrator_service`: UPDATE of the placement columns only, SELECT of what a placement plan reads;
  `tenant_migrations` SELECT, INSERT, UPDATE; `tenant_usage_metrics` SELECT.

None is SUPERUSER, BYPASSRLS, CREATEDB, CREATEROLE or REPLICATION, none owns anything (the owner
`platform_owner` runs migrations and the cutover's fence), and none is a member of the owner.

Timeouts (`ALTER ROLE ... SET`, so they hold whatever the client sends first):
- request-serving roles: `statement_timeout` 5 s — every request statement is a point query or a
  bounded batch (1,000 products at most) measured in milliseconds, and a write waits at most
  `WRITE_WAIT_SECONDS` (5 s) for a cutover, so a longer statement is a runaway holding a pooled
  connection; `idle_in_transaction_session_timeout` 10 s — a unit of work idle that long inside its
  transaction means a stalled process, and it may hold a tenant's order-number row lock.
- usage 15 s / 30 s: its "busiest tenants" aggregation scans a month of metrics.
- the migrator 15 min / 1 min: it copies a tenant in batches (a batch may be large), and it is not on
  a request path.
- app_user (tools such as `tenantctl`, psql) 1 min / 1 min.
`lock_timeout` is left to the statements that wait on locks (tenantdb_enter, the cutover), which set
their own deadlines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

APP_GROUP: Final = "app_user"
OWNER_ROLE: Final = "platform_owner"
# The outbox relay's login role: the only one that may claim and settle outbox rows (outbox_ddl).
RELAY_ROLE: Final = "outbox_relay"

# What no runtime role may have. INHERIT: members get app_user's grants without SET ROLE.
RUNTIME_ROLE_ATTRIBUTES: Final = "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT"

# The columns every service needs to route a tenant (tenantdb's directory, the relay's source list).
DIRECTORY_COLUMNS: Final = ("id", "tenant_type", "database_name", "status", "placement_epoch")
PLACEMENT_COLUMNS: Final = ("tenant_type", "database_name", "placement_epoch", "updated_at")
USAGE_COLUMNS: Final = ("product_count", "monthly_requests")


@dataclass(frozen=True)
class ServiceRole:
    """A service's login role and the session defaults it gets from the server."""

    service: str
    name: str
    statement_timeout: str
    idle_in_transaction_session_timeout: str

    @property
    def env_prefix(self) -> str:
        """`CATALOG_` for `CATALOG_PLATFORM_DATABASE_URL` / `CATALOG_SHARED_DATABASE_URL` (stack.env)."""
        return self.service.upper() + "_"

    @property
    def settings(self) -> dict[str, str]:
        return {
            "statement_timeout": self.statement_timeout,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_session_timeout,
        }


TENANCY: Final = ServiceRole("tenancy", "tenancy_service", "5s", "10s")
CATALOG: Final = ServiceRole("catalog", "catalog_service", "5s", "10s")
ORDERS: Final = ServiceRole("orders", "orders_service", "5s", "10s")
USAGE: Final = ServiceRole("usage", "usage_service", "15s", "30s")
MIGRATOR: Final = ServiceRole("migrator", "migrator_service", "15min", "1min")
SERVICE_ROLES: Final = (TENANCY, CATALOG, ORDERS, USAGE, MIGRATOR)
# The group role's own defaults, for tools that log in as it.
APP_GROUP_SETTINGS: Final = {"statement_timeout": "1min", "idle_in_transaction_session_timeout": "1min"}


def role_for(service: str) -> ServiceRole:
    for role in SERVICE_ROLES:
        if role.service == service:
            return role
    raise KeyError(f"no database role for service {service!r}")


def quote_ident(name: str) -> str:
    """A role name as a quoted identifier (role names come from configuration, not users)."""
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _setting_statements(role: str, settings: dict[str, str]) -> list[str]:
    return [
        f"ALTER ROLE {quote_ident(role)} SET {key} = {_literal(value)}" for key, value in settings.items()
    ]


def ensure_roles_ddl(group: str = APP_GROUP) -> list[str]:
    """Statements (for a revision, run as the owner) that make every service role exist and be set up.

    A role missing here (roles normally come from devstack's bootstrap or the cluster's operator, with
    LOGIN and a password) is created NOLOGIN, so the grants that follow can name it. Membership and
    timeouts need the right to administer the role: PostgreSQL 15 grants it to CREATEROLE, 16+ only
    with ADMIN OPTION. Where the owner lacks it, a WARNING names what a superuser must run
    (`ensure_roles_ddl` again, or `superuser_role_ddl`); devstack's bootstrap runs those as the
    superuser anyway.
    """
    statements: list[str] = []
    for role in SERVICE_ROLES:
        exists = f"EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_literal(role.name)})"  # noqa: S608
        create = f"CREATE ROLE {quote_ident(role.name)} NOLOGIN {RUNTIME_ROLE_ATTRIBUTES}"
        statements.append(f"DO $$ BEGIN IF NOT {exists} THEN {create}; END IF; END $$")
    for statement in _administration_ddl(group):
        statements.append(
            f"""DO $$ BEGIN
                   EXECUTE {_literal(statement)};
               EXCEPTION WHEN insufficient_privilege THEN
                   RAISE WARNING 'not allowed to run (a superuser must): %', {_literal(statement)};
               END $$"""
        )
    return statements


def _administration_ddl(group: str) -> list[str]:
    statements = [*_setting_statements(group, APP_GROUP_SETTINGS)]
    for role in SERVICE_ROLES:
        statements.append(f"GRANT {quote_ident(group)} TO {quote_ident(role.name)}")
        statements += _setting_statements(role.name, role.settings)
    return statements


def superuser_role_ddl(passwords: dict[str, str] | None = None) -> list[str]:
    """What a superuser runs to set the service roles up completely (devstack's bootstrap): each a
    LOGIN role with the runtime attributes (and its password when given), member of app_user, with
    its timeouts. Expects the roles and app_user to exist (CREATE them first)."""
    statements: list[str] = []
    for role in SERVICE_ROLES:
        password = (passwords or {}).get(role.name)
        secret = f" PASSWORD {_literal(password)}" if password is not None else ""
        statements.append(f"ALTER ROLE {quote_ident(role.name)} WITH LOGIN {RUNTIME_ROLE_ATTRIBUTES}{secret}")
    return statements + _administration_ddl(APP_GROUP)


def grant_connect_ddl(group: str = APP_GROUP) -> str:
    """CONNECT on the current database for the group (members inherit it); run by its owner."""
    grant = f"format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {_literal(group)})"
    return f"DO $$ BEGIN EXECUTE {grant}; END $$"
