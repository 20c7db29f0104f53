"""The privilege audit: as each service's own login role (tenantschema.roles), statement by statement,
what it must be refused, what it must still be able to do, and what it must not be.

Each statement runs in a transaction that is rolled back, so an audit that finds a hole changes
nothing. To audit one more statement, add one line to REFUSED (or ALLOWED): the role names it holds
for, the database, the SQL. `{tenant}` is a real tenant's id (made by tenancy's role), `{other}` the
id of a tenant that has a product in the shared database, `{fresh}` a random suffix.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from tenantschema import roles
from tenantschema.urls import libpq_url, with_database

from tests.integration.tenantdb.conftest import create_tenant
from tests.support.databases import role_url

SERVICES = tuple(role.service for role in roles.SERVICE_ROLES)
ALL = SERVICES
INSUFFICIENT_PRIVILEGE = "42501"


def all_but(*services: str) -> tuple[str, ...]:
    return tuple(s for s in SERVICES if s not in services)


@dataclass(frozen=True)
class Statement:
    services: tuple[str, ...]
    database: str  # platform | shared
    sql: str
    why: str
    in_transaction: bool = True  # CREATE DATABASE cannot run inside one


REFUSED: tuple[Statement, ...] = (
    # The outbox relay's functions return every tenant's events: the relay's role alone runs them.
    *(
        Statement(ALL, database, sql, "only the outbox relay claims and settles outbox rows")
        for database in ("platform", "shared")
        for sql in (
            "SELECT * FROM outbox_claim('audit', 10, 30, false)",
            "SELECT outbox_settle('audit', '{{}}', '{{}}', '{{}}', NULL, '{{}}', '{{}}')",
            "SELECT * FROM outbox_backlog()",
            "SELECT outbox_release('audit')",
            "SELECT * FROM outbox",
        )
    ),
    # The routing directory: only tenancy writes it, nobody deletes from it (deletes are soft).
    Statement(
        all_but("tenancy"),
        "platform",
        "INSERT INTO tenants (name, subdomain) VALUES ('audit', 'audit-{fresh}')",
        "only tenancy creates tenants",
    ),
    Statement(
        all_but("tenancy"),
        "platform",
        "UPDATE tenants SET name = 'audit' WHERE id = '{tenant}'",
        "only tenancy changes a tenant",
    ),
    Statement(ALL, "platform", "DELETE FROM tenants WHERE id = '{tenant}'", "tenants are deleted softly"),
    Statement(
        ("catalog", "orders", "usage"),
        "platform",
        "UPDATE tenants SET database_name = 'tenant_{fresh}' WHERE id = '{tenant}'",
        "pointing a tenant at another database is the migrator's alone",
    ),
    Statement(
        ("migrator",),
        "platform",
        "UPDATE tenants SET status = 'suspended' WHERE id = '{tenant}'",
        "the migrator may update the placement columns only",
    ),
    Statement(
        ("migrator",),
        "platform",
        "UPDATE tenants SET product_count = 0 WHERE id = '{tenant}'",
        "the migrator may update the placement columns only",
    ),
    Statement(
        ("usage",),
        "platform",
        "UPDATE tenants SET plan = 'enterprise' WHERE id = '{tenant}'",
        "usage may update the two usage columns only",
    ),
    Statement(
        ("usage",),
        "platform",
        "UPDATE tenants SET placement_epoch = placement_epoch + 1 WHERE id = '{tenant}'",
        "usage may update the two usage columns only",
    ),
    Statement(
        ("catalog", "orders"),
        "platform",
        "SELECT name, settings FROM tenants WHERE id = '{tenant}'",
        "catalog and orders read the directory columns only",
    ),
    Statement(
        all_but("tenancy"),
        "platform",
        "INSERT INTO subscription_plans (name, price, features, limits) VALUES ('a{fresh}', 1, '[]', '{{}}')",
        "only tenancy writes plans",
    ),
    Statement(
        all_but("usage"),
        "platform",
        "INSERT INTO tenant_usage_metrics (tenant_id, metric_date) VALUES ('{tenant}', current_date)",
        "only usage writes usage metrics",
    ),
    Statement(
        all_but("migrator"),
        "platform",
        "UPDATE tenant_migrations SET status = 'failed'",
        "only the migrator writes migrations",
    ),
    Statement(
        all_but("migrator"),
        "platform",
        "INSERT INTO placement_decisions (tenant_id, trigger, event_id, event_type, action, outcome, reason) "
        "VALUES ('{tenant}', 'products', gen_random_uuid(), 'audit', 'move', 'queued', 'audit')",
        "only the migrator decides placements",
    ),
    Statement(
        ALL, "platform", "UPDATE placement_decisions SET reason = 'rewritten'", "decisions are a record"
    ),
    Statement(ALL, "platform", "DELETE FROM placement_decisions", "decisions are a record"),
    # The fence table: owner only (tenantdb_enter asks it through SECURITY DEFINER).
    Statement(ALL, "shared", "SELECT * FROM tenant_fences", "fences are the owner's"),
    Statement(ALL, "shared", "DELETE FROM tenant_fences", "fences are the owner's"),
    # Row Level Security cannot be switched off or gone around.
    Statement(
        ALL,
        "shared",
        "SET LOCAL row_security = off; SELECT count(*) FROM products",
        "with row_security off, a query RLS would filter is an error, not a bypass",
    ),
    Statement(ALL, "shared", "SET LOCAL session_replication_role = replica", "triggers and FKs stay on"),
    Statement(ALL, "shared", "TRUNCATE products", "TRUNCATE would bypass RLS"),
    Statement(ALL, "shared", "ALTER TABLE products DISABLE ROW LEVEL SECURITY", "not the owner"),
    Statement(ALL, "shared", "DROP POLICY products_tenant_isolation ON products", "not the owner"),
    # No way to become someone else or to make things.
    Statement(ALL, "shared", f"SET ROLE {roles.OWNER_ROLE}", "not a member of the owner"),
    Statement(ALL, "platform", f"SET ROLE {roles.OWNER_ROLE}", "not a member of the owner"),
    Statement(all_but("tenancy"), "platform", "SET ROLE tenancy_service", "no service is another"),
    Statement(ALL, "platform", "SET ROLE postgres", "not a superuser"),
    Statement(ALL, "shared", "CREATE TABLE audit_{fresh} (id int)", "no CREATE on the schema"),
    Statement(ALL, "platform", "CREATE TABLE audit_{fresh} (id int)", "no CREATE on the schema"),
    Statement(ALL, "platform", "CREATE SCHEMA audit_{fresh}", "no CREATE on the database"),
    Statement(ALL, "platform", "CREATE DATABASE audit_{fresh}", "NOCREATEDB", in_transaction=False),
    Statement(ALL, "platform", "CREATE ROLE audit_{fresh}", "NOCREATEROLE"),
    Statement(ALL, "platform", f"GRANT {roles.OWNER_ROLE} TO CURRENT_USER", "no ADMIN on the owner"),
    Statement(ALL, "platform", "GRANT app_user TO CURRENT_USER WITH ADMIN OPTION", "no ADMIN on app_user"),
    Statement(ALL, "platform", "SELECT pg_read_file('postgresql.conf')", "no server file access"),
    Statement(ALL, "platform", "COPY (SELECT 1) TO PROGRAM 'true'", "no server programs"),
)

ALLOWED: tuple[Statement, ...] = (
    Statement(
        ALL,
        "platform",
        "SELECT id, tenant_type, database_name, status, placement_epoch FROM tenants WHERE id = '{tenant}'",
        "every service routes tenants",
    ),
    Statement(ALL, "platform", "SELECT name, price FROM subscription_plans", "plans are public"),
    Statement(
        ("tenancy",),
        "platform",
        "INSERT INTO tenants (name, subdomain) VALUES ('audit', 'audit-{fresh}')",
        "tenancy creates tenants",
    ),
    Statement(
        ("tenancy",),
        "platform",
        "UPDATE tenants SET name = 'audit', status = 'active' WHERE id = '{tenant}'",
        "tenancy changes tenants",
    ),
    Statement(
        ("usage",),
        "platform",
        "UPDATE tenants SET product_count = product_count + 1, monthly_requests = 0 WHERE id = '{tenant}'",
        "usage keeps the counters",
    ),
    Statement(
        ("usage",),
        "platform",
        "INSERT INTO tenant_usage_metrics (tenant_id, metric_date) VALUES ('{tenant}', current_date)",
        "usage writes metrics",
    ),
    Statement(
        ("migrator",),
        "platform",
        "UPDATE tenants SET tenant_type = 'shared', database_name = NULL, "
        "placement_epoch = placement_epoch + 1, updated_at = now() WHERE id = '{tenant}' "
        "RETURNING placement_epoch",
        "the migrator flips placements (tenantdb.fencing.flip_placement)",
    ),
    Statement(
        ("migrator",),
        "platform",
        "INSERT INTO tenant_migrations (tenant_id, migration_type, from_state, to_state) "
        "VALUES ('{tenant}', 'to_dedicated', '{{}}', '{{}}')",
        "the migrator records migrations",
    ),
    Statement(
        ("migrator",),
        "platform",
        "INSERT INTO placement_decisions (tenant_id, trigger, event_id, event_type, action, outcome, reason) "
        "VALUES ('{tenant}', 'products', gen_random_uuid(), 'audit', 'move', 'queued', 'audit')",
        "the migrator records its placement decisions",
    ),
    Statement(
        ALL,
        "shared",
        "SET LOCAL app.current_tenant_id = '{tenant}'; SELECT tenantdb_enter('{tenant}', true, 100); "
        "INSERT INTO products (name, price) VALUES ('audit', 1)",
        "tenant rows under RLS, through app_user",
    ),
)


@dataclass(frozen=True)
class Fixtures:
    tenant: uuid.UUID
    other: uuid.UUID


@pytest.fixture(scope="module")
async def audit(stack_env: dict[str, str]) -> AsyncIterator[Fixtures]:
    tenant = await create_tenant(role_url(stack_env, "tenancy"))
    other = uuid.uuid4()
    shared_admin = libpq_url(with_database(stack_env["ADMIN_DATABASE_URL"], "shared"))
    admin = await asyncpg.connect(shared_admin)
    try:
        # Another tenant's row, put there by the superuser (RLS does not apply to it).
        await admin.execute(
            "INSERT INTO products (tenant_id, name, price) VALUES ($1, 'not yours', 1)", other
        )
        yield Fixtures(tenant, other)
    finally:
        await admin.execute("DELETE FROM products WHERE tenant_id = $1", other)
        await admin.close()


def _sql(statement: Statement, fixtures: Fixtures) -> str:
    return statement.sql.format(tenant=fixtures.tenant, other=fixtures.other, fresh=uuid.uuid4().hex[:12])


async def _run(connection: asyncpg.Connection, sql: str, in_transaction: bool) -> None:
    if not in_transaction:
        await connection.execute(sql)
        return
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(sql)
    finally:
        await transaction.rollback()


async def _connect(stack_env: dict[str, str], service: str, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(role_url(stack_env, service, database))


@pytest.mark.parametrize("service", SERVICES)
async def test_each_role_is_refused_what_is_not_its_own(
    stack_env: dict[str, str], audit: Fixtures, service: str
) -> None:
    holes: list[str] = []
    for database in ("platform", "shared"):
        connection = await _connect(stack_env, service, database)
        try:
            for statement in REFUSED:
                if service not in statement.services or statement.database != database:
                    continue
                sql = _sql(statement, audit)
                try:
                    await _run(connection, sql, statement.in_transaction)
                except asyncpg.PostgresError as error:
                    if error.sqlstate != INSUFFICIENT_PRIVILEGE:
                        holes.append(f"{database}: {sql!r} failed with {error.sqlstate} ({error}), not 42501")
                else:
                    holes.append(f"{database}: {sql!r} was ALLOWED ({statement.why})")
        finally:
            await connection.close()
    assert not holes, f"{service}_service:\n" + "\n".join(holes)


@pytest.mark.parametrize("service", SERVICES)
async def test_each_role_can_still_do_its_job(
    stack_env: dict[str, str], audit: Fixtures, service: str
) -> None:
    """The other half of least privilege: the grants are not so tight that the service breaks."""
    failures: list[str] = []
    for database in ("platform", "shared"):
        connection = await _connect(stack_env, service, database)
        try:
            for statement in ALLOWED:
                if service not in statement.services or statement.database != database:
                    continue
                sql = _sql(statement, audit)
                try:
                    await _run(connection, sql, statement.in_transaction)
                except asyncpg.PostgresError as error:
                    failures.append(f"{database}: {sql!r}: {error.sqlstate} {error} ({statement.why})")
        finally:
            await connection.close()
    assert not failures, f"{service}_service:\n" + "\n".join(failures)


@pytest.mark.parametrize("service", SERVICES)
async def test_another_tenants_rows_are_invisible_without_context(
    stack_env: dict[str, str], audit: Fixtures, service: str
) -> None:
    connection = await _connect(stack_env, service, "shared")
    try:
        assert (
            await connection.fetchval("SELECT count(*) FROM products WHERE tenant_id = $1", audit.other) == 0
        )
        async with connection.transaction():
            await connection.execute(f"SET LOCAL app.current_tenant_id = '{audit.tenant}'")
            assert (
                await connection.fetchval("SELECT count(*) FROM products WHERE tenant_id = $1", audit.other)
                == 0
            )
    finally:
        await connection.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_each_role_is_powerless_owns_nothing_and_carries_its_timeouts(
    stack_env: dict[str, str], service: str
) -> None:
    role = roles.role_for(service)
    for database in ("platform", "shared"):
        connection = await _connect(stack_env, service, database)
        try:
            assert await connection.fetchval("SELECT current_user") == role.name
            attributes = await connection.fetchrow(
                """SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolreplication, rolconfig
                   FROM pg_roles WHERE rolname = current_user"""
            )
            assert attributes is not None
            for flag in ("rolsuper", "rolbypassrls", "rolcreatedb", "rolcreaterole", "rolreplication"):
                assert attributes[flag] is False, f"{role.name}: {flag}"
            config = dict(item.split("=", 1) for item in attributes["rolconfig"] or [])
            assert config == role.settings, f"{role.name}: ALTER ROLE ... SET"
            # The session really runs with them (nothing overrides the role's defaults).
            assert await connection.fetchval("SHOW statement_timeout") == role.statement_timeout
            assert (
                await connection.fetchval("SHOW idle_in_transaction_session_timeout")
                == role.idle_in_transaction_session_timeout
            )
            owned = await connection.fetch(
                """SELECT 'relation ' || relname AS what FROM pg_class WHERE relowner = current_user::regrole
                   UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE proowner = current_user::regrole
                   UNION ALL SELECT 'schema ' || nspname FROM pg_namespace
                             WHERE nspowner = current_user::regrole"""
            )
            assert [row["what"] for row in owned] == [], f"{role.name} owns objects"
            assert await connection.fetchval(
                "SELECT pg_has_role(current_user, $1, 'MEMBER')", roles.APP_GROUP
            )
            assert not await connection.fetchval(
                "SELECT pg_has_role(current_user, $1, 'MEMBER')", roles.OWNER_ROLE
            )
        finally:
            await connection.close()


# SECURITY DEFINER functions a service role may execute: they return no tenant rows.
DEFINER_FUNCTIONS_ALLOWED = frozenset({"tenantdb_enter"})


@pytest.mark.parametrize("service", SERVICES)
async def test_no_security_definer_function_beyond_the_fence_check(
    stack_env: dict[str, str], service: str
) -> None:
    for database in ("platform", "shared"):
        connection = await _connect(stack_env, service, database)
        try:
            rows = await connection.fetch(
                """SELECT p.proname FROM pg_proc p
                   WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace
                     AND has_function_privilege(current_user, p.oid, 'EXECUTE')"""
            )
        finally:
            await connection.close()
        executable = {row["proname"] for row in rows}
        unexpected = executable - DEFINER_FUNCTIONS_ALLOWED
        assert not unexpected, f"{service} may execute SECURITY DEFINER {sorted(unexpected)} on {database}"
