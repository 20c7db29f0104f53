"""The cutover's flip updates the tenant's directory row, which other services lock too: usage's batch
holds it while it updates the tenant's counters (tens to hundreds of milliseconds under a backlog),
tenancy while it updates the tenant. The flip used to wait for such a transaction inside the freeze,
every write of the tenant held meanwhile. Now the row is locked before the hold, in the transaction
that flips it: the wait happens while the tenant is still served."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from migrator.app import create_app
from sqlalchemy import text
from tenantdb import TenantDB, TenantDBSettings

from tests.integration.migrator.conftest import (
    checksums,
    directory,
    migrator_settings,
    move_until_phase,
    seed_shared,
    wait_for,
)
from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.apps import serve
from tests.support.databases import role_url

# How long the row stays locked after the move reached its cutover.
_HELD_SECONDS = 1.0


async def _write(tenants: TenantDB, tenant_id: uuid.UUID) -> float:
    """One write of the tenant through tenantdb, as catalog makes it; seconds."""
    started = time.perf_counter()
    async with tenants.unit_of_work(tenant_id) as uow:
        await uow.connection.execute(text("UPDATE products SET price = price WHERE sku = 'SKU-1'"))
        await uow.commit()
    return time.perf_counter() - started


async def test_a_transaction_holding_the_directory_row_is_waited_for_outside_the_freeze(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=20)
    before = await checksums(stack_env, tenant_id, "shared")
    # What usage's batch takes on the rows of the tenants it counts (repository.lock_tenants).
    blocker = await asyncpg.connect(role_url(stack_env, "usage", "platform"))
    tenants = TenantDB(
        TenantDBSettings(
            platform_database_url=role_url(stack_env, "catalog", "platform"),
            shared_database_url=role_url(stack_env, "catalog", "shared"),
        )
    )
    latencies: list[float] = []
    try:
        locking = blocker.transaction()
        await locking.start()
        await blocker.execute("SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE", tenant_id)
        async with serve(create_app(migrator_settings(stack_env))) as client:
            migration_id = await move_until_phase(client, tenant_id, "cutover")
            # The cutover waits for the row now; the tenant's writes must not wait with it.
            released_at = time.monotonic() + _HELD_SECONDS
            while time.monotonic() < released_at:
                latencies.append(await _write(tenants, tenant_id))
                await asyncio.sleep(0.01)
            assert (await client.get(f"/v1/migrations/{migration_id}")).json()["phase"] == "cutover"
            await locking.rollback()  # the batch ends: the flip may go on
            done = await wait_for(client, migration_id, {"completed", "failed", "cancelled"})
    finally:
        await blocker.close()
        await tenants.close()
    assert done["status"] == "completed", done
    assert (await directory(stack_env, tenant_id))["tenant_type"] == "dedicated"
    assert await checksums(stack_env, tenant_id, "dedicated") == before
    assert latencies
    # No write of the tenant was held while the cutover waited for the row (the hold waits up to
    # the drain deadline, 2 s, and was what the flip waited inside of before)...
    assert max(latencies) < 0.5, sorted(latencies)[-5:]
    # ...and the freeze did not include the wait.
    assert done["progress"]["freeze_ms"] < _HELD_SECONDS * 1000 / 2, done["progress"]


async def _move_connections(admin_url: str, since: datetime) -> list[str]:
    """The copy's and the cutover's connections opened since `since` and open now (the runner's lock
    aside; the stack's own migrator, paused, opens none)."""
    connection = await asyncpg.connect(admin_url)
    try:
        rows = await connection.fetch(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE application_name IN ('migrator:mover', 'migrator:cutover') AND backend_start >= $1",
            since,
        )
    finally:
        await connection.close()
    return [row["application_name"] for row in rows]


async def test_a_move_waiting_for_its_cleanup_holds_no_copy_or_cutover_connection(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    """Found when the stack's migrator ran the automatic moves of a test suite's tenants: each move
    waiting out its cleanup delay kept its five connections, 200 in all, and the services were
    refused connections. Now a move in its cleanup keeps only the runner's lock."""
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=10)
    settings = migrator_settings(stack_env, migrator_cleanup_delay_seconds=600)
    started = datetime.now(UTC)
    async with serve(create_app(settings)) as client:
        migration_id = await move_until_phase(client, tenant_id, "cleanup")
        deadline = time.monotonic() + 60
        opened: list[str] = ["not looked at yet"]
        while opened and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            opened = await _move_connections(stack_env["ADMIN_DATABASE_URL"], started)
        assert not opened, opened
        assert (await client.get(f"/v1/migrations/{migration_id}")).json()["phase"] == "cleanup"
        cleanup = await client.post(f"/v1/migrations/{migration_id}/cleanup")
        assert cleanup.status_code == 202, cleanup.text
        done = await wait_for(client, migration_id, {"completed", "failed", "cancelled"})
    assert done["status"] == "completed", done
