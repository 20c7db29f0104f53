"""The build fails unless the runtime roles cannot bypass Row Level Security and every tenant table
enforces it with USING and WITH CHECK policies."""

from __future__ import annotations

import asyncpg
from tenantdb import dedicated_database_name
from tenantschema.declarations import CURRENT
from tenantschema.urls import libpq_url, with_database

from tests.integration.tenantdb.conftest import MakeTenant

TENANT_TABLES = [decl.name for decl in CURRENT]


async def _fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def _role_is_powerless(url: str, role: str) -> None:
    [row] = await _fetch(url, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", role)
    assert not row["rolsuper"], f"{role} is a superuser"
    assert not row["rolbypassrls"], f"{role} has BYPASSRLS"
    owned = await _fetch(
        url,
        """SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
           WHERE r.rolname = $1 AND c.relnamespace = 'public'::regnamespace""",
        role,
    )
    assert owned == [], f"{role} owns {[r['relname'] for r in owned]}"


async def test_the_services_role_cannot_bypass_rls(shared_url: str, platform_url: str) -> None:
    for url in (shared_url, platform_url):
        [row] = await _fetch(url, "SELECT current_user AS role")
        await _role_is_powerless(url, row["role"])


async def test_every_shared_tenant_table_forces_rls_with_both_policies(shared_url: str) -> None:
    tables = await _fetch(
        shared_url,
        """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                  coalesce(p.parent, c.relname) AS parent
           FROM pg_class c
           LEFT JOIN LATERAL (SELECT i.inhparent::regclass::text AS parent FROM pg_inherits i
                              WHERE i.inhrelid = c.oid) p ON true
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
             AND EXISTS (SELECT 1 FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)""",
    )
    # Infrastructure keyed by tenant_id: the runtime role cannot read it (fences: nothing at all;
    # outbox: INSERT only, for the tenant in context); relays use SECURITY DEFINER functions.
    infrastructure = {"tenant_fences", "outbox"}
    for name in infrastructure:
        assert not await _fetch(shared_url, "SELECT 1 WHERE has_table_privilege($1, 'SELECT')", name)
    tables = [t for t in tables if t["relname"] not in infrastructure]
    assert {t["parent"] for t in tables} == set(TENANT_TABLES), "a tenant table is missing or unexpected"
    for table in tables:
        name = table["relname"]
        assert table["relrowsecurity"], f"{name}: RLS not enabled"
        assert table["relforcerowsecurity"], f"{name}: RLS not forced"
        policies = await _fetch(
            shared_url,
            """SELECT polcmd::text AS polcmd, polpermissive, pg_get_expr(polqual, polrelid) AS using_expr,
                      pg_get_expr(polwithcheck, polrelid) AS check_expr
               FROM pg_policy WHERE polrelid = $1::regclass""",
            name,
        )
        assert policies, f"{name}: no policy"
        for policy in policies:
            assert policy["polcmd"] == "*", f"{name}: policy not FOR ALL"
            for expr in (policy["using_expr"], policy["check_expr"]):
                assert expr is not None, f"{name}: policy lacks USING or WITH CHECK"
                assert "tenant_id" in expr
                assert "app.current_tenant_id" in expr


async def test_a_dedicated_databases_role_owns_nothing(make_tenant: MakeTenant, owner_url: str) -> None:
    tenant = await make_tenant("dedicated")
    database = dedicated_database_name(tenant)
    url = libpq_url(with_database(owner_url, database))
    await _role_is_powerless(url, database)
    grants = await _fetch(
        url,
        """SELECT DISTINCT table_name FROM information_schema.role_table_grants
           WHERE grantee = $1 ORDER BY 1""",
        database,
    )
    assert [g["table_name"] for g in grants] == sorted([*TENANT_TABLES, "outbox"])
