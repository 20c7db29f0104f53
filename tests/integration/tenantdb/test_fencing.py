"""Fencing: no write lands on a placement the tenant no longer has, whatever a cache believes."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import insert, select
from tenantdb import TenantDB, TenantMoving
from tenantdb.fencing import Cutover, flip_placement
from tenantdb.provisioning import provision_dedicated
from tenantschema.tables import products
from tenantschema.urls import libpq_url, with_database

from tests.integration.tenantdb.conftest import MakeTenant, MakeTenantDB, dedicated_secret
from tests.support.databases import role_url


async def _write(tdb: TenantDB, tenant: uuid.UUID, name: str) -> str:
    async with tdb.unit_of_work(tenant) as uow:
        await uow.connection.execute(insert(products).values(name=name, price=1))
        await uow.commit()
        return uow.placement.tenant_type


async def _names_in(owner_db_url: str, tenant: uuid.UUID | None) -> set[str]:
    """What a database holds for the tenant, read as the owner (RLS applies: FORCEd)."""
    conn = await asyncpg.connect(owner_db_url)
    try:
        async with conn.transaction():
            if tenant is not None:
                await conn.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant))
            return {r["name"] for r in await conn.fetch("SELECT name FROM products")}
    finally:
        await conn.close()


async def _move_with_cutover(
    stack_env: dict[str, str], tenant: uuid.UUID, hold_seconds: float = 0.0, held: asyncio.Event | None = None
) -> str:
    """The migrator's cutover, minus the data copy: lock, fence the source, flip, release."""
    database = await provision_dedicated(
        stack_env["ADMIN_DATABASE_URL"], stack_env["OWNER_DATABASE_URL"], tenant, dedicated_secret()
    )
    shared_owner = libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], "shared"))
    async with Cutover.hold(shared_owner, tenant) as cutover:
        if held is not None:
            held.set()
        await asyncio.sleep(hold_seconds)
        platform = await asyncpg.connect(role_url(stack_env, "migrator"))
        try:
            epoch = await platform.fetchval("SELECT placement_epoch + 1 FROM tenants WHERE id = $1", tenant)
            await cutover.fence(epoch=epoch, moved_to=database)
            await flip_placement(platform, tenant, tenant_type="dedicated", database_name=database)
        finally:
            await platform.close()
    return database


async def test_stale_cache_cannot_write_to_the_old_placement(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant("shared")
    stale = make_tenantdb(directory_ttl_seconds=3600)  # process B: will never hear of the move
    assert await _write(stale, tenant, "before") == "shared"

    database = await _move_with_cutover(stack_env, tenant)
    assert (await stale.directory.get(tenant)).tenant_type == "shared"  # still believes it

    assert await _write(stale, tenant, "after") == "dedicated"  # rerouted, not applied on shared
    shared_owner = libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], "shared"))
    assert await _names_in(shared_owner, tenant) == {"before"}
    dedicated_owner = libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], database))
    assert await _names_in(dedicated_owner, None) == {"after"}


async def test_stale_read_is_rerouted_when_reads_are_fenced(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant("shared")
    stale = make_tenantdb(directory_ttl_seconds=3600, fence_reads=True)
    await stale.directory.get(tenant)
    await _move_with_cutover(stack_env, tenant)
    async with stale.unit_of_work(tenant, readonly=True) as uow:
        assert uow.placement.tenant_type == "dedicated"


async def test_stale_read_sees_the_frozen_source_until_invalidated(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    """By default reads skip the fence: a stale route reads the source as it was at cutover (no
    write can have landed there since), and the next write or invalidation corrects the route."""
    tenant = await make_tenant("shared")
    stale = make_tenantdb(directory_ttl_seconds=3600)
    assert await _write(stale, tenant, "before") == "shared"
    await _move_with_cutover(stack_env, tenant)

    async with stale.unit_of_work(tenant, readonly=True) as uow:
        assert uow.placement.tenant_type == "shared"
        names = {r.name for r in await uow.connection.execute(select(products.c.name))}
    assert names == {"before"}
    assert await _write(stale, tenant, "after") == "dedicated"  # the fence corrects the route
    async with stale.unit_of_work(tenant, readonly=True) as uow:
        assert uow.placement.tenant_type == "dedicated"


async def test_write_during_cutover_waits_then_lands_on_the_new_placement(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant("shared")
    tdb = make_tenantdb(write_wait_seconds=10)
    await tdb.directory.get(tenant)
    held = asyncio.Event()
    move = asyncio.create_task(_move_with_cutover(stack_env, tenant, hold_seconds=1.0, held=held))
    await held.wait()

    write = asyncio.create_task(_write(tdb, tenant, "during"))
    await asyncio.sleep(0.3)  # let the write reach the lock
    # Reads are never blocked: a read-only unit of work completes while the cutover holds the tenant.
    async with tdb.unit_of_work(tenant, readonly=True) as uow:
        await uow.connection.execute(select(products.c.id))
    assert not move.done()
    assert not write.done()  # the write waits for the cutover

    database = await move
    assert await asyncio.wait_for(write, 10) == "dedicated"
    dedicated_owner = libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], database))
    assert await _names_in(dedicated_owner, None) == {"during"}


async def test_write_fails_retryably_when_the_cutover_outlasts_the_wait(
    stack_env: dict[str, str], make_tenantdb: MakeTenantDB, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant("shared")
    tdb = make_tenantdb(write_wait_seconds=0.3)
    held = asyncio.Event()
    move = asyncio.create_task(_move_with_cutover(stack_env, tenant, hold_seconds=2.0, held=held))
    await held.wait()
    with pytest.raises(TenantMoving) as caught:
        await _write(tdb, tenant, "too-late")
    assert caught.value.retryable
    database = await move
    shared_owner = libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], "shared"))
    dedicated_owner = libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], database))
    assert await _names_in(shared_owner, tenant) == set()
    assert await _names_in(dedicated_owner, None) == set()
    # And the retry the error asks for succeeds, on the new placement.
    assert await _write(tdb, tenant, "retried") == "dedicated"
