"""The connection cache in front of each engine (tenantdb/connections.py), against real PostgreSQL:
consecutive units of work reuse one backend, the pool's bound holds under concurrency, waiters are
handed released connections in order, an exhausted pool still fails in time, a cancelled waiter loses
nothing, a terminated connection is not reused, old ones are recycled, and evicted engines close
their cached connections."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from sqlalchemy import select, text
from tenantdb import PoolExhausted, TenantDB
from tenantschema.tables import products

from tests.integration.tenantdb.conftest import MakeTenant, MakeTenantDB


def _name() -> str:
    return f"cache-{uuid.uuid4().hex[:8]}"


# The directory's platform connections carry the same name: count tenant databases' only.
_COUNT = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname <> 'platform'"


async def _connections(admin_url: str, application_name: str) -> int:
    """Connections the TenantDB under test holds to tenant databases (shared or dedicated)."""
    admin = await asyncpg.connect(admin_url)
    try:
        count: int = await admin.fetchval(_COUNT, application_name)
        return count
    finally:
        await admin.close()


async def _pid(tdb: TenantDB, tenant: uuid.UUID, *, hold: float = 0.0) -> int:
    async with tdb.unit_of_work(tenant, readonly=True) as uow:
        pid: int = await uow.driver.fetchval("SELECT pg_backend_pid()")
        if hold:
            await uow.driver.execute(f"SELECT pg_sleep({hold})")
    return pid


async def _terminate(admin_url: str, pid: int) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_consecutive_units_of_work_reuse_one_backend(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    name = _name()
    tdb = make_tenantdb(shared_pool_size=3, application_name=name)
    tenant = await make_tenant("shared")
    pids = {await _pid(tdb, tenant) for _ in range(20)}
    async with tdb.unit_of_work(tenant) as uow:  # a write, committed, on the same connection
        await uow.driver.execute("SELECT 1")
        pids.add(await uow.driver.fetchval("SELECT pg_backend_pid()"))
        await uow.commit()
    pids.add(await _pid(tdb, tenant))
    assert len(pids) == 1, f"{len(pids)} backends served 22 consecutive units of work"
    assert await _connections(admin_url, name) == 1


async def test_fifty_concurrent_units_of_work_stay_within_the_pool(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    name = _name()
    tdb = make_tenantdb(shared_pool_size=4, shared_max_overflow=0, application_name=name)
    tenant = await make_tenant("shared")
    done = asyncio.Event()
    seen: list[int] = []

    async def watch() -> None:
        admin = await asyncpg.connect(admin_url)
        try:
            while not done.is_set():
                seen.append(await admin.fetchval(_COUNT, name))
                await asyncio.sleep(0.01)
        finally:
            await admin.close()

    watcher = asyncio.create_task(watch())
    pids = await asyncio.gather(*(_pid(tdb, tenant, hold=0.02) for _ in range(50)))
    done.set()
    await watcher
    assert max(seen) <= 4, f"{max(seen)} connections for a pool of 4"
    assert len(set(pids)) <= 4
    assert await _connections(admin_url, name) <= 4


async def test_waiters_are_handed_released_connections(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    name = _name()
    # 3x (and then 15x) more concurrent units of work than connections, each short: nobody may time
    # out, since every release goes straight to the first waiter.
    tdb = make_tenantdb(shared_pool_size=2, pool_timeout_seconds=1.0, application_name=name)
    tenant = await make_tenant("shared")
    for concurrency in (6, 30):
        started = time.perf_counter()
        pids = await asyncio.gather(*(_pid(tdb, tenant, hold=0.01) for _ in range(concurrency)))
        assert len(pids) == concurrency
        assert len(set(pids)) <= 2
        assert time.perf_counter() - started < 1.0
    assert await _connections(admin_url, name) <= 2


async def test_connections_held_past_the_timeout_are_still_pool_exhausted(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    name = _name()
    tdb = make_tenantdb(shared_pool_size=2, pool_timeout_seconds=0.3, application_name=name)
    tenant = await make_tenant("shared")
    await _pid(tdb, tenant)  # one connection cached idle: it must be used, not counted twice
    async with tdb.unit_of_work(tenant, readonly=True), tdb.unit_of_work(tenant, readonly=True):
        started = time.perf_counter()
        with pytest.raises(PoolExhausted):
            async with tdb.unit_of_work(tenant, readonly=True):
                pass
        assert 0.25 < time.perf_counter() - started < 2.0
        assert await _connections(admin_url, name) == 2
    assert len({await _pid(tdb, tenant) for _ in range(5)}) == 1  # recovered, and reusing again
    assert await _connections(admin_url, name) == 2


async def test_a_cancelled_waiter_loses_no_connection(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    name = _name()
    tdb = make_tenantdb(shared_pool_size=1, pool_timeout_seconds=1.0, application_name=name)
    tenant = await make_tenant("shared")

    # Cancelled while only waiting.
    async with tdb.unit_of_work(tenant, readonly=True):
        waiter = asyncio.create_task(_pid(tdb, tenant))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    # Cancelled just as the released connection is handed to it: the release and the cancel happen
    # before the waiter runs again, so it must pass the connection on, not drop it.
    for _ in range(3):
        holder = tdb.unit_of_work(tenant, readonly=True)
        await holder.__aenter__()
        waiter = asyncio.create_task(_pid(tdb, tenant))
        await asyncio.sleep(0.05)
        await holder.__aexit__(None, None, None)  # hands the connection to the waiter, no yield
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    # The only connection is still there: no wait, no PoolExhausted, no second backend.
    started = time.perf_counter()
    pids = await asyncio.gather(*(_pid(tdb, tenant) for _ in range(5)))
    assert time.perf_counter() - started < 0.5
    assert len(set(pids)) == 1
    assert await _connections(admin_url, name) == 1


@pytest.mark.parametrize("settle", [0.0, 0.2], ids=["at-once", "after-eof"])
async def test_a_terminated_cached_connection_is_not_reused(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str, settle: float
) -> None:
    name = _name()
    tdb = make_tenantdb(shared_pool_size=1, application_name=name)
    tenant = await make_tenant("shared")
    first = await _pid(tdb, tenant)  # now cached idle
    await _terminate(admin_url, first)
    await asyncio.sleep(settle)  # 0: the server's FATAL may not even have been read yet
    # The dead connection is noticed (closed driver) or its BEGIN fails without effect: either way the
    # unit of work goes on on a new connection, and the dead one is never pooled again.
    second = await _pid(tdb, tenant)
    assert second != first
    assert await _pid(tdb, tenant) == second
    assert await _connections(admin_url, name) == 1


async def test_connections_older_than_the_recycle_age_are_replaced(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    name = _name()
    tdb = make_tenantdb(shared_pool_size=1, pool_recycle_seconds=1, application_name=name)
    tenant = await make_tenant("shared")
    first = await _pid(tdb, tenant)
    assert await _pid(tdb, tenant) == first
    await asyncio.sleep(1.1)
    second = await _pid(tdb, tenant)
    assert second != first
    assert await _pid(tdb, tenant) == second
    assert await _connections(admin_url, name) == 1  # the old backend was closed, not leaked


async def test_direct_engine_users_are_not_starved_by_the_cache(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    name = _name()
    tdb = make_tenantdb(shared_pool_size=1, pool_timeout_seconds=2.0, application_name=name)
    tenant = await make_tenant("shared")

    async def direct() -> None:  # as the readiness check and the relay do
        async with tdb.shared_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    await _pid(tdb, tenant)  # the pool's only connection now sits in the cache
    started = time.perf_counter()
    await direct()
    assert time.perf_counter() - started < 0.5, "a direct checkout waited on a cached idle connection"

    # And while a unit of work holds the connection, a waiting direct checkout gets it on release.
    async with tdb.unit_of_work(tenant, readonly=True):
        waiting = asyncio.create_task(direct())
        await asyncio.sleep(0.05)
        assert not waiting.done()
    started = time.perf_counter()
    await asyncio.wait_for(waiting, 1.0)
    assert time.perf_counter() - started < 0.5
    assert await _pid(tdb, tenant) > 0  # units of work go on afterwards
    assert await _connections(admin_url, name) == 1


async def test_evicted_dedicated_engines_close_their_cached_connections(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    tenants = [await make_tenant("dedicated") for _ in range(3)]
    name = _name()
    tdb = make_tenantdb(
        max_dedicated_engines=1, dedicated_pool_size=1, dedicated_max_overflow=0, application_name=name
    )
    for _ in range(2):
        for tenant in tenants:
            async with tdb.unit_of_work(tenant, readonly=True) as uow:
                await uow.connection.execute(select(products.c.id))
            # Its connection is cached idle now: that must not keep the engine from eviction.
            await tdb.dedicated.settle()
            assert len(tdb.dedicated) == 1
            assert await _connections(admin_url, name) == 1
    await tdb.dedicated.dispose_all()
    assert await _connections(admin_url, name) == 0


async def test_pgbouncer_mode_caches_nothing(make_tenantdb: MakeTenantDB, make_tenant: MakeTenant) -> None:
    # Against PostgreSQL directly: with NullPool every unit of work gets a connection of its own.
    tdb = make_tenantdb(pgbouncer=True)
    tenant = await make_tenant("shared")
    assert await _pid(tdb, tenant) != await _pid(tdb, tenant)


async def test_a_worker_has_a_cache_of_its_own(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    name = _name()
    tdb = make_tenantdb(shared_pool_size=2, application_name=name)
    worker = tdb.for_worker("relay", pool_size=1)
    tenant = await make_tenant("shared")
    request_pid, worker_pid = await _pid(tdb, tenant), await _pid(worker, tenant)
    assert request_pid != worker_pid
    assert await _pid(tdb, tenant) == request_pid
    assert await _pid(worker, tenant) == worker_pid
    assert await _connections(admin_url, name) == 1
    assert await _connections(admin_url, f"{name}:relay") == 1
