"""The split-brain guard: PostgreSQL itself refuses writes for a tenant that does not live here.

tenantdb's writers meet the fence in `tenantdb_enter` (fencing_ddl.py), but a process that bypasses
tenantdb (a script, a stale deployment, psql as a service role) would not. So every tenant table gets
a statement-level BEFORE INSERT/UPDATE/DELETE trigger, `tenantdb_guard`, that reads `tenant_fences`:

- shared: the tenant of the transaction's context (`app.current_tenant_id`, which RLS makes the only
  tenant a runtime role can write) must not be fenced here;
- dedicated: the database must carry no fence at all (it holds one tenant: a fence means the tenant
  moved away, or has not moved in yet: the migrator fences a target until its cutover).

A refused write fails with SQLSTATE TD001, as the fence does in tenantdb_enter. One trigger call and
one index probe per write statement, not per row. The migrator's own writes (copy into a target,
deleting a moved tenant's rows from the source) run with `session_replication_role = replica`, under
which ordinary triggers do not fire (a superuser setting: no runtime role can use it).
"""

from __future__ import annotations

from typing import Final, Literal

from tenantschema.declarations import CURRENT
from tenantschema.fencing_ddl import FENCED_SQLSTATE
from tenantschema.render import CURRENT_TENANT_SQL

GUARD_FUNCTION: Final = "tenantdb_guard"

_SHARED_BODY = f"""
DECLARE
    tenant uuid := {CURRENT_TENANT_SQL};
BEGIN
    IF tenant IS NOT NULL AND EXISTS (SELECT 1 FROM tenant_fences f WHERE f.tenant_id = tenant) THEN
        RAISE EXCEPTION 'tenant % does not live in this database (guard on %)', tenant, TG_TABLE_NAME
            USING ERRCODE = '{FENCED_SQLSTATE}';
    END IF;
    RETURN NULL;
END
"""

_DEDICATED_BODY = f"""
DECLARE
    fenced uuid;
BEGIN
    SELECT f.tenant_id INTO fenced FROM tenant_fences f LIMIT 1;
    IF fenced IS NOT NULL THEN
        RAISE EXCEPTION 'tenant % does not live in this database (guard on %)', fenced, TG_TABLE_NAME
            USING ERRCODE = '{FENCED_SQLSTATE}';
    END IF;
    RETURN NULL;
END
"""


def _trigger(table: str) -> str:
    return f"{GUARD_FUNCTION}_{table}"


def create_guard(variant: Literal["shared", "dedicated"]) -> list[str]:
    body = _SHARED_BODY if variant == "shared" else _DEDICATED_BODY
    statements = [
        f"""CREATE FUNCTION {GUARD_FUNCTION}() RETURNS trigger
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$ {body} $$""",
        f"REVOKE ALL ON FUNCTION {GUARD_FUNCTION}() FROM PUBLIC",
    ]
    for decl in CURRENT:
        statements.append(
            f"CREATE TRIGGER {_trigger(decl.name)} BEFORE INSERT OR UPDATE OR DELETE ON {decl.name} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {GUARD_FUNCTION}()"
        )
    return statements


def drop_guard() -> list[str]:
    return [
        *(f"DROP TRIGGER {_trigger(decl.name)} ON {decl.name}" for decl in CURRENT),
        f"DROP FUNCTION {GUARD_FUNCTION}()",
    ]
