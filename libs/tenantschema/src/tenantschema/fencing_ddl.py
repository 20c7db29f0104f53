"""The database half of tenantdb's fencing protocol, present in the shared and every dedicated database.

- `tenant_fences`: a row means "this tenant no longer lives in this database" (written by the migrator
  at cutover, in the same exclusive window as the directory flip). Only the owner role touches it.
- `tenantdb_fence_key(uuid)`: the advisory lock key of a tenant.
- `tenantdb_enter(tenant, for_write, wait_ms)`: called at the start of every writing unit of work,
  in the same round trip as BEGIN. For writes it takes the tenant's advisory lock SHARED (waiting at
  most `wait_ms` while a cutover holds it EXCLUSIVE); it raises SQLSTATE TD001 when the tenant is
  fenced here, so a stale router is turned away instead of writing the old placement. Reads call it
  only when tenantdb's `fence_reads` is on (see libs/tenantdb/README.md). SECURITY DEFINER: the
  runtime role can ask the question but cannot read or change the fence table.

See libs/tenantdb/README.md for the whole protocol.
"""

from __future__ import annotations

from typing import Final

from tenantschema.render import quote_ident

FENCED_SQLSTATE: Final = "TD001"


def create_fencing(app_role: str) -> list[str]:
    role = quote_ident(app_role)
    return [
        """CREATE TABLE tenant_fences (
               tenant_id uuid PRIMARY KEY,
               epoch bigint NOT NULL,
               moved_to text NOT NULL,
               fenced_at timestamptz NOT NULL DEFAULT now()
           )""",
        "REVOKE ALL ON tenant_fences FROM PUBLIC",
        """CREATE FUNCTION tenantdb_fence_key(tenant uuid) RETURNS bigint
               LANGUAGE sql IMMUTABLE PARALLEL SAFE
               AS $$ SELECT hashtextextended('tenantdb:' || tenant::text, 0) $$""",
        f"""CREATE FUNCTION tenantdb_enter(tenant uuid, for_write boolean, wait_ms integer) RETURNS integer
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
               AS $$
               DECLARE
                   previous_timeout text;
               BEGIN
                   IF for_write THEN
                       previous_timeout := current_setting('lock_timeout');
                       PERFORM set_config('lock_timeout', wait_ms || 'ms', true);
                       PERFORM pg_advisory_xact_lock_shared(tenantdb_fence_key(tenant));
                       PERFORM set_config('lock_timeout', previous_timeout, true);
                   END IF;
                   IF EXISTS (SELECT 1 FROM tenant_fences f WHERE f.tenant_id = tenant) THEN
                       RAISE EXCEPTION 'tenant % has moved off this database', tenant
                           USING ERRCODE = '{FENCED_SQLSTATE}';
                   END IF;
                   RETURN 0;
               END
               $$""",  # noqa: S608  (a constant SQLSTATE, no input)
        "REVOKE ALL ON FUNCTION tenantdb_enter(uuid, boolean, integer) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION tenantdb_enter(uuid, boolean, integer) TO {role}",
    ]


def drop_fencing() -> list[str]:
    return [
        "DROP FUNCTION tenantdb_enter(uuid, boolean, integer)",
        "DROP FUNCTION tenantdb_fence_key(uuid)",
        "DROP TABLE tenant_fences",
    ]
