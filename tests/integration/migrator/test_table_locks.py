"""The capture's DDL on the live shared tables (CREATE TRIGGER at the start of a move, DROP TRIGGER
after it) needs a lock that every other tenant's writes queue behind while the DDL waits. Autovacuum
holds a conflicting lock for as long as it vacuums a table; a DDL that waited for it 1 s (PostgreSQL's
deadlock_timeout, after which it cancels the autovacuum) stalled every tenant's writes to that table
for that second, as measured in the migrator benchmark's neighbour. Here a transaction holds what
autovacuum holds, and never yields: the move must wait for it without stalling anyone."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest
from migrator import moves
from migrator.app import create_app

from tests.integration.migrator.conftest import (
    checksums,
    directory,
    endpoint,
    migrator_settings,
    seed_shared,
    wait_for,
)
from tests.integration.migrator.test_move import _capture_objects
from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.apps import serve
from tests.support.databases import role_url

# The blocker holds its lock this long, longer than the DDL's old single wait (2 s).
_HOLD_SECONDS = 3.0


async def _write(connection: asyncpg.Connection, tenant_id: uuid.UUID) -> float:
    """One write of the neighbour, as catalog writes its rows (RLS context, products row); seconds."""
    started = time.perf_counter()
    async with connection.transaction():
        await connection.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))
        await connection.execute("UPDATE products SET price = price WHERE tenant_id = $1", tenant_id)
    return time.perf_counter() - started


async def _ddl_waiting(watcher: asyncpg.Connection) -> bool:
    """Whether the migrator's DDL is queued for a lock on products right now."""
    return bool(
        await watcher.fetchval(
            """SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                              WHERE NOT l.granted AND l.relation = 'products'::regclass
                                AND a.application_name = 'migrator:mover')"""
        )
    )


async def test_a_capture_blocked_by_autovacuum_waits_without_stalling_other_tenants(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant_id = await make_tenant("shared")
    neighbour_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=40)
    await seed_shared(stack_env, neighbour_id, products=5)
    before = await checksums(stack_env, tenant_id, "shared")
    shared = endpoint(stack_env, tenant_id, "shared")
    blocker = await asyncpg.connect(shared.admin_url)
    watcher = await asyncpg.connect(shared.admin_url)
    neighbour = await asyncpg.connect(role_url(stack_env, "catalog", "shared"))
    latencies: list[float] = []
    seen_waiting = 0
    try:
        holding = blocker.transaction()
        await holding.start()
        # What an autovacuum of the table holds (it conflicts with CREATE TRIGGER's lock, not with
        # the writers'); unlike an autovacuum, nothing cancels it.
        await blocker.execute("LOCK TABLE products IN SHARE UPDATE EXCLUSIVE MODE")
        async with serve(create_app(migrator_settings(stack_env))) as client:
            made = await client.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
            assert made.status_code == 202, made.text
            migration_id = made.json()["id"]
            released_at = time.monotonic() + _HOLD_SECONDS
            while time.monotonic() < released_at:
                seen_waiting += await _ddl_waiting(watcher)
                latencies.append(await _write(neighbour, neighbour_id))
                await asyncio.sleep(0.005)
            # Still held: the move cannot have captured products yet.
            assert (await client.get(f"/v1/migrations/{migration_id}")).json()["phase"] in (
                "provision",
                "capture",
            )
            await holding.rollback()
            done = await wait_for(client, migration_id, {"completed", "failed", "cancelled"})
    finally:
        for connection in (blocker, watcher, neighbour):
            await connection.close()
    assert done["status"] == "completed", done
    assert (await directory(stack_env, tenant_id))["tenant_type"] == "dedicated"
    assert await checksums(stack_env, tenant_id, "dedicated") == before
    assert not await _capture_objects(stack_env, "shared")  # its triggers were dropped again
    # The DDL did queue for the lock, again and again, while the neighbour wrote...
    assert seen_waiting >= 2, seen_waiting
    # ...and no write of the neighbour waited behind it much longer than one attempt's lock timeout
    # (before: up to the DDL's whole 2 s wait, or 1 s until an autovacuum was cancelled).
    assert max(latencies) < 10 * moves.TABLE_LOCK_TIMEOUT_MS / 1000, sorted(latencies)[-5:]


async def test_the_table_ddl_lowers_its_own_deadlock_timeout_and_gives_up_after_its_attempts(
    stack_env: dict[str, str], monkeypatch: Any
) -> None:
    """The owner may set deadlock_timeout (devstack grants it, as the migrator README asks of a
    platform): inside the DDL's transaction it is below the lock timeout, so PostgreSQL cancels a
    blocking autovacuum within the first attempt; the session's own value is left as it was. A lock
    never released is given up after the attempts (the phase then retries later)."""
    shared = endpoint(stack_env, uuid.uuid4(), "shared")
    owner = await asyncpg.connect(shared.owner_url)
    blocker = await asyncpg.connect(shared.admin_url)
    try:
        assert await moves.may_set(owner, "deadlock_timeout")
        check = f"""DO $$ BEGIN
                       IF current_setting('deadlock_timeout') <> '{moves.TABLE_DEADLOCK_TIMEOUT_MS}ms' THEN
                           RAISE EXCEPTION 'deadlock_timeout is %', current_setting('deadlock_timeout');
                       END IF;
                   END $$"""
        assert (
            await moves.run_table_ddl(owner, [check, "LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE"]) == 1
        )
        assert await owner.fetchval("SHOW deadlock_timeout") == "1s"
        monkeypatch.setattr(moves, "TABLE_LOCK_ATTEMPTS", 3)
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE products IN SHARE UPDATE EXCLUSIVE MODE")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await moves.run_table_ddl(owner, ["LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE"])
    finally:
        await owner.close()
        await blocker.close()
