"""One pooled connection, two tenants, thousands of alternations: no unit of work ever sees the other
tenant's rows, and after every ending (commit, rollback, exception, cancellation) the connection
carries no tenant context and no open transaction."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import insert, select, text
from tenantdb import TenantDB
from tenantschema.tables import products

from tests.integration.tenantdb.conftest import MakeTenant, MakeTenantDB

ROUNDS = 2000
ENDINGS = ("commit", "rollback", "exception", "cancel")


class Boom(Exception):
    pass


async def _pooled_connection_is_clean(tdb: TenantDB) -> None:
    """Check out the (single) pooled connection directly, outside tenantdb."""
    async with tdb.shared_engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        assert not raw.is_in_transaction()
        assert await raw.fetchval("SELECT current_setting('app.current_tenant_id', true)") in (None, "")
        assert await raw.fetchval("SELECT count(*) FROM products") == 0  # no context: nothing visible


async def _seed(tdb: TenantDB, tenant: uuid.UUID, names: list[str]) -> None:
    async with tdb.unit_of_work(tenant) as uow:
        for name in names:
            await uow.connection.execute(insert(products).values(name=name, price=1))
        await uow.commit()


@pytest.mark.slow
async def test_alternating_tenants_on_one_connection_never_leak(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tdb = make_tenantdb(shared_pool_size=1, shared_max_overflow=0)
    a, b = await make_tenant("shared"), await make_tenant("shared")
    await _seed(tdb, a, ["a1", "a2"])
    await _seed(tdb, b, ["b1"])
    expected = {a: {"a1", "a2"}, b: {"b1"}}

    for i in range(ROUNDS):
        tenant = (a, b)[i % 2]
        ending = ENDINGS[(i // 2) % len(ENDINGS)]
        if ending == "cancel":
            started = asyncio.Event()

            async def slow_query(tenant: uuid.UUID = tenant, started: asyncio.Event = started) -> None:
                async with tdb.unit_of_work(tenant) as uow:
                    started.set()
                    await uow.connection.execute(text("SELECT pg_sleep(5)"))

            task = asyncio.create_task(slow_query())
            await started.wait()
            await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with pytest.raises(Boom) if ending == "exception" else _nothing():
                async with tdb.unit_of_work(tenant) as uow:
                    names = set((await uow.connection.execute(select(products.c.name))).scalars())
                    assert names == expected[tenant]
                    await uow.connection.execute(insert(products).values(name="temp", price=1))
                    if ending == "commit":
                        await uow.connection.execute(text("DELETE FROM products WHERE name = 'temp'"))
                        await uow.commit()
                    elif ending == "exception":
                        raise Boom
        if i % 97 == 0 or ending == "cancel":
            await _pooled_connection_is_clean(tdb)
    await _pooled_connection_is_clean(tdb)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("ending", ENDINGS)
async def test_no_context_after_each_ending(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, ending: str
) -> None:
    tdb = make_tenantdb(shared_pool_size=1, shared_max_overflow=0)
    tenant = await make_tenant("shared")
    await _seed(tdb, tenant, ["x"])
    if ending == "cancel":

        async def slow() -> None:
            async with tdb.unit_of_work(tenant) as uow:
                await uow.connection.execute(text("SELECT pg_sleep(10)"))

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    elif ending == "exception":
        with pytest.raises(Boom):
            async with tdb.unit_of_work(tenant):
                raise Boom
    else:
        async with tdb.unit_of_work(tenant) as uow:
            await uow.connection.execute(select(products.c.id))
            if ending == "commit":
                await uow.commit()
    await _pooled_connection_is_clean(tdb)
