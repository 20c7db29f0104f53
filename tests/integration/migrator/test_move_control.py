"""Moves run by a runner of the test's own settings (a slow copy, a short drain), in a module of their
own: test_move's module-wide migrator polls the same migrations, and a move it took instead would be
copied too fast to cancel, or cut over on its own deadline."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from migrator.app import create_app
from migrator.moves import fence_of

from tests.integration.migrator.conftest import (
    checksums,
    directory,
    endpoint,
    migrator_settings,
    move_until_phase,
    seed_shared,
    wait_for,
)
from tests.integration.migrator.test_move import _capture_objects
from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.apps import serve
from tests.support.databases import role_url


async def _cancelled_mid_copy(
    stack_env: dict[str, str], tenant_id: uuid.UUID, done: dict[str, Any], before: Any, *, products: int
) -> None:
    """The move ended cancelled before its copy of the products was through, and left the tenant as
    it was: served from shared, the same rows, no capture objects."""
    assert done["status"] == "cancelled", done
    assert done["progress"]["tables"]["products"]["rows"] < products  # it was stopped mid-copy
    assert (await directory(stack_env, tenant_id))["tenant_type"] == "shared"
    assert await checksums(stack_env, tenant_id, "shared") == before
    assert not await _capture_objects(stack_env, "shared")


async def test_cancel_during_the_copy_leaves_no_trace(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=120)
    before = await checksums(stack_env, tenant_id, "shared")
    # Progress recorded once a minute: only the cancel's nudge to this process can stop the copy.
    slow = migrator_settings(stack_env, migrator_copy_chunk_rows=1, migrator_copy_progress_seconds=60)
    async with serve(create_app(slow)) as client:
        migration_id = await move_until_phase(client, tenant_id, "copy", poll=0.05)
        cancel = await client.post(f"/v1/migrations/{migration_id}/cancel")
        assert cancel.status_code == 202, cancel.text
        done = await wait_for(client, migration_id, {"cancelled", "failed", "completed"})
    await _cancelled_mid_copy(stack_env, tenant_id, done, before, products=120)
    admin = await asyncpg.connect(stack_env["ADMIN_DATABASE_URL"])
    try:
        assert not await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", f"tenant_{tenant_id.hex}"
        )
        assert not await admin.fetchval(
            "SELECT 1 FROM pg_roles WHERE rolname = $1", f"tenant_{tenant_id.hex}"
        )
    finally:
        await admin.close()
    # No fence was left on the source: the tenant writes there as before.
    assert await fence_of(endpoint(stack_env, tenant_id, "shared").owner_url, tenant_id) is None


async def test_a_drain_that_misses_its_deadline_releases_the_tenant_and_retries(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    """A write transaction of the tenant that stays open (it holds the fence lock shared, as every
    tenantdb write does) keeps the cutover from draining: each attempt gives up after its deadline
    without taking anything, the tenant's other writes go on meanwhile, and once the long write ends
    the next attempt flips."""
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=5)
    shared_owner = endpoint(stack_env, tenant_id, "shared").owner_url
    straggler = await asyncpg.connect(role_url(stack_env, "catalog", "shared"))
    writer = await asyncpg.connect(role_url(stack_env, "catalog", "shared"))
    settings = migrator_settings(
        stack_env, migrator_drain_timeout_seconds=0.3, migrator_cutover_retry_seconds=0.2
    )
    try:
        transaction = straggler.transaction()
        await transaction.start()
        await straggler.execute("SELECT tenantdb_enter($1, true, 1000)", tenant_id)
        async with serve(create_app(settings)) as client:
            made = await client.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
            migration_id = made.json()["id"]
            deadline = time.monotonic() + 60
            while (await client.get(f"/v1/migrations/{migration_id}")).json()["cutover_attempts"] < 2:
                assert time.monotonic() < deadline, "the cutover never tried"
                await asyncio.sleep(0.05)
            # Between attempts the tenant is not frozen: another write of it goes through.
            async with writer.transaction():
                await writer.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))
                await writer.execute("SELECT tenantdb_enter($1, true, 2000)", tenant_id)
                await writer.execute("INSERT INTO products (name, price) VALUES ('meanwhile', 2.00)")
            state = (await client.get(f"/v1/migrations/{migration_id}")).json()
            assert state["phase"] == "cutover"
            assert state["progress"]["last_cutover_abort"].startswith("drain_timeout")
            await transaction.rollback()
            done = await wait_for(client, migration_id, {"completed", "failed"})
        assert done["status"] == "completed", done
        assert done["cutover_attempts"] >= 2
        after = await checksums(stack_env, tenant_id, "dedicated")
        assert after["products"][0] == 6  # the write made between two attempts moved too
        assert (await fence_of(shared_owner, tenant_id)) is not None
    finally:
        await straggler.close()
        await writer.close()


async def test_a_cancel_through_another_replica_stops_the_copy_at_its_next_progress_record(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    """The copy records its progress at most every MIGRATOR_COPY_PROGRESS_SECONDS, and reads the
    cancel mark as it does. A cancel through this process is seen at the next chunk; one through
    another replica (no nudge reaches the copy's process) at the next record: still mid-copy."""
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=300)
    before = await checksums(stack_env, tenant_id, "shared")
    running = migrator_settings(stack_env, migrator_copy_chunk_rows=1, migrator_copy_progress_seconds=0.2)
    other = migrator_settings(stack_env, migrator_runner_enabled=False)
    async with serve(create_app(running)) as runner_client, serve(create_app(other)) as other_client:
        made = await runner_client.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
        assert made.status_code == 202
        migration_id = made.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            state = (await other_client.get(f"/v1/migrations/{migration_id}")).json()
            if state["phase"] == "copy" and (state["progress"].get("tables") or {}).get("products", {}).get(
                "rows"
            ):
                break  # recorded mid-products: the copy's records are going
            assert state["phase"] in ("provision", "capture", "copy"), state
            assert time.monotonic() < deadline, "the move never recorded copying products"
            await asyncio.sleep(0.02)
        cancel = await other_client.post(f"/v1/migrations/{migration_id}/cancel")
        assert cancel.status_code == 202, cancel.text
        done = await wait_for(other_client, migration_id, {"cancelled", "failed", "completed"})
    await _cancelled_mid_copy(stack_env, tenant_id, done, before, products=300)
