"""Pools, waiting and cancellation: a tenant held at a cutover does not take the pool from the others,
an exhausted pool is a retryable error, a cancelled directory waiter cancels nobody else, unknown
tenants are cached briefly, and the cutover's own lock wait has a deadline."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert, select
from tenantdb import CutoverLockTimeout, PoolExhausted, TenantDB, TenantNotFound, unit_of_work
from tenantdb.fencing import Cutover
from tenantschema.tables import products
from tenantschema.urls import libpq_url, with_database

from tests.integration.tenantdb.conftest import MakeTenant, MakeTenantDB
from tests.support.databases import role_url


def _shared_owner(stack_env: dict[str, str]) -> str:
    return libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], "shared"))


def _lookups(result: str) -> float:
    return REGISTRY.get_sample_value("tenantdb_directory_lookups_total", {"result": result}) or 0.0


async def _write(tdb: TenantDB, tenant: uuid.UUID, name: str) -> None:
    async with tdb.unit_of_work(tenant) as uow:
        await uow.connection.execute(insert(products).values(name=name, price=1))
        await uow.commit()


async def _count(tdb: TenantDB, tenant: uuid.UUID) -> int:
    async with tdb.unit_of_work(tenant, readonly=True) as uow:
        return len((await uow.connection.execute(select(products.c.id))).all())


async def test_writes_held_at_a_cutover_leave_the_pool_to_other_tenants(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tdb = make_tenantdb(shared_pool_size=2, write_wait_seconds=5.0, pool_timeout_seconds=1.0)
    held, other = await make_tenant("shared"), await make_tenant("shared")
    async with Cutover.hold(_shared_owner(stack_env), held):
        # Ten writers of the held tenant: five times the pool. Waiting inside the database they
        # would hold both connections and the other tenant would time out on the pool.
        writers = [asyncio.create_task(_write(tdb, held, f"w{i}")) for i in range(10)]
        await asyncio.sleep(0.2)  # all of them are waiting now
        latencies = []
        for i in range(20):
            started = time.perf_counter()
            await _write(tdb, other, f"o{i}")
            latencies.append(time.perf_counter() - started)
        assert not any(w.done() for w in writers), "a held tenant's write went through the cutover"
    await asyncio.wait_for(asyncio.gather(*writers), 10)  # released: every held write lands
    assert max(latencies) < 0.5, f"the other tenant waited {max(latencies):.3f}s"
    assert await _count(tdb, held) == 10
    assert await _count(tdb, other) == 20


async def test_an_exhausted_pool_is_a_retryable_error_not_a_hang(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tdb = make_tenantdb(shared_pool_size=1, shared_max_overflow=0, pool_timeout_seconds=0.3)
    tenant = await make_tenant("shared")
    async with tdb.unit_of_work(tenant, readonly=True):  # the pool's only connection
        started = time.perf_counter()
        with pytest.raises(PoolExhausted) as caught:
            async with tdb.unit_of_work(tenant, readonly=True):
                pass
        assert 0.25 < time.perf_counter() - started < 2.0
    assert caught.value.retryable
    assert await _count(tdb, tenant) == 0  # the pool recovered: the connection came back


async def test_a_cancelled_directory_waiter_cancels_no_one_else(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tdb = make_tenantdb()
    tenant = await make_tenant("shared")
    owner = await asyncpg.connect(stack_env["OWNER_DATABASE_URL"])
    try:
        # The directory's query waits on this lock: three waiters pile up behind one lookup.
        transaction = owner.transaction()
        await transaction.start()
        await owner.execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        misses_before = _lookups("miss")
        first = asyncio.create_task(tdb.directory.get(tenant))  # starts the shared lookup
        await asyncio.sleep(0.1)
        others = [asyncio.create_task(tdb.directory.get(tenant)) for _ in range(2)]
        await asyncio.sleep(0.1)
        first.cancel()
        await asyncio.sleep(0.1)
        await transaction.rollback()
    finally:
        await owner.close()
    with pytest.raises(asyncio.CancelledError):
        await first
    placements = await asyncio.wait_for(asyncio.gather(*others), 5)
    assert {p.tenant_id for p in placements} == {tenant}
    assert _lookups("miss") - misses_before == 3  # three misses ...
    hits_before = _lookups("hit")
    await tdb.directory.get(tenant)  # ... and one query, whose result is cached
    assert _lookups("hit") - hits_before == 1


async def test_a_cancelled_unit_of_work_propagates_and_returns_its_connection(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tdb = make_tenantdb(shared_pool_size=1, pool_timeout_seconds=1.0)
    tenant = await make_tenant("shared")
    entered = asyncio.Event()

    async def slow() -> None:
        async with tdb.unit_of_work(tenant) as uow:
            entered.set()
            await uow.connection.exec_driver_sql("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()  # not swallowed on the way out of the unit of work
    await _write(tdb, tenant, "after")  # the only connection is usable again
    assert await _count(tdb, tenant) == 1


async def test_unknown_tenants_are_cached_as_unknown_for_a_moment(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB
) -> None:
    tdb = make_tenantdb(directory_negative_ttl_seconds=0.5)
    unknown = uuid.uuid4()
    misses_before = _lookups("miss")
    for _ in range(200):  # a flood of requests for a tenant that does not exist
        with pytest.raises(TenantNotFound):
            await tdb.directory.get(unknown)
    assert _lookups("miss") - misses_before == 1, "each request for an unknown tenant cost a query"

    # The tenant appears: found after at most the negative TTL, and at once after invalidate().
    tenancy = await asyncpg.connect(role_url(stack_env, "tenancy"))
    try:
        await tenancy.execute(
            "INSERT INTO tenants (id, name, subdomain) VALUES ($1, 'late', $2)", unknown, f"t-{unknown.hex}"
        )
        with pytest.raises(TenantNotFound):
            await tdb.directory.get(unknown)  # still remembered as unknown
        await asyncio.sleep(0.6)
        assert (await tdb.directory.get(unknown)).tenant_id == unknown

        another = uuid.uuid4()
        with pytest.raises(TenantNotFound):
            await tdb.directory.get(another)
        await tenancy.execute(
            "INSERT INTO tenants (id, name, subdomain) VALUES ($1, 'late', $2)", another, f"t-{another.hex}"
        )
        tdb.directory.invalidate(another)
        assert (await tdb.directory.get(another)).tenant_id == another
        await tenancy.execute(
            "UPDATE tenants SET status = 'deleted' WHERE id = ANY($1::uuid[])", [unknown, another]
        )
    finally:
        await tenancy.close()


async def test_cutover_hold_gives_up_at_its_deadline_and_takes_nothing(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tdb = make_tenantdb()
    tenant = await make_tenant("shared")
    async with tdb.unit_of_work(tenant) as uow:  # an in-flight write holds the fence lock shared
        await uow.connection.execute(insert(products).values(name="in flight", price=1))
        started = time.perf_counter()
        with pytest.raises(CutoverLockTimeout, match=r"not acquired within 0\.30s"):
            async with Cutover.hold(_shared_owner(stack_env), tenant, wait_seconds=0.3):
                pytest.fail("the cutover got the lock while a write held it")
        assert 0.25 < time.perf_counter() - started < 3.0
        await uow.commit()  # the write was never disturbed
    await _write(tdb, tenant, "after")  # and nothing was left locked or fenced
    assert await _count(tdb, tenant) == 2
    admin = await asyncpg.connect(stack_env["ADMIN_DATABASE_URL"])
    try:
        lingering = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrator:cutover'"
        )
    finally:
        await admin.close()
    assert lingering == 0
    # Once the writer is gone, the same hold succeeds at once.
    async with Cutover.hold(_shared_owner(stack_env), tenant, wait_seconds=0.3):
        pass


async def test_many_writes_of_a_held_tenant_probe_the_lock_as_one(
    stack_env: dict[str, str],
    make_tenantdb: MakeTenantDB,
    make_tenant: MakeTenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tdb = make_tenantdb(write_wait_seconds=5.0)
    tenant = await make_tenant("shared")
    probes = 0
    begin_sql = unit_of_work._begin_sql

    def counting(*args: Any) -> str:
        nonlocal probes
        probes += 1
        return begin_sql(*args)

    monkeypatch.setattr(unit_of_work, "_begin_sql", counting)
    async with Cutover.hold(_shared_owner(stack_env), tenant):
        writers = [asyncio.create_task(_write(tdb, tenant, f"w{i}")) for i in range(50)]
        await asyncio.sleep(1.0)
        during_hold = probes
    await asyncio.wait_for(asyncio.gather(*writers), 10)
    # Each write's first attempt, then about one probe per backoff step (≤ 100 ms) for them all:
    # fifty writers probing on their own make ~250.
    assert during_hold < 50 + 30, f"{during_hold} probes in 1 s"
    assert await _count(tdb, tenant) == 50
