"""One repository, both placements: the same SQL runs on the shared database (tenant_id filled and
filtered for it) and on a dedicated database (where tenant_id does not exist)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import func, insert, select, update
from tenantdb import TenantDB, TenantNotFound, TenantUnavailable
from tenantschema.tables import products

from tests.integration.tenantdb.conftest import Kind, MakeTenant


class ProductRepository:
    """What a service's repository looks like: no tenant_id anywhere."""

    def __init__(self, tdb: TenantDB) -> None:
        self.tdb = tdb

    async def add(self, tenant_id: uuid.UUID, name: str, sku: str, price: Decimal) -> uuid.UUID:
        async with self.tdb.unit_of_work(tenant_id) as uow:
            new_id: uuid.UUID = (
                await uow.connection.execute(
                    insert(products).values(name=name, sku=sku, price=price).returning(products.c.id)
                )
            ).scalar_one()
            await uow.commit()
        return new_id

    async def names(self, tenant_id: uuid.UUID) -> list[str]:
        async with self.tdb.unit_of_work(tenant_id, readonly=True) as uow:
            rows = await uow.connection.execute(select(products.c.name).order_by(products.c.name))
            return list(rows.scalars())

    async def reprice_all(self, tenant_id: uuid.UUID, price: Decimal) -> int:
        async with self.tdb.unit_of_work(tenant_id) as uow:
            result = await uow.connection.execute(update(products).values(price=price))
            await uow.commit()
            return result.rowcount


@pytest.mark.parametrize("kind", ["shared", "dedicated"])
async def test_same_repository_code_on_both_placements(
    tdb: TenantDB, make_tenant: MakeTenant, kind: Kind
) -> None:
    repo = ProductRepository(tdb)
    mine, other = await make_tenant(kind), await make_tenant(kind)
    await repo.add(mine, "b-widget", "W-1", Decimal("9.99"))
    await repo.add(mine, "a-gadget", "G-1", Decimal("19.99"))
    await repo.add(other, "c-thing", "W-1", Decimal("1.00"))  # same sku, another tenant: allowed

    assert await repo.names(mine) == ["a-gadget", "b-widget"]
    assert await repo.names(other) == ["c-thing"]
    assert await repo.reprice_all(mine, Decimal("5.00")) == 2
    async with tdb.unit_of_work(other, readonly=True) as uow:
        prices = (await uow.connection.execute(select(products.c.price))).scalars().all()
    assert prices == [Decimal("1.00")]
    async with tdb.unit_of_work(mine, readonly=True) as uow:
        assert uow.placement.tenant_type == kind


async def test_shared_rows_carry_the_tenant_id(
    tdb: TenantDB, make_tenant: MakeTenant, shared_url: str
) -> None:
    tenant = await make_tenant("shared")
    product_id = await ProductRepository(tdb).add(tenant, "n", "S", Decimal("1"))
    conn = await asyncpg.connect(shared_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant))
            assert await conn.fetchval("SELECT tenant_id FROM products WHERE id = $1", product_id) == tenant
    finally:
        await conn.close()


async def test_uncommitted_work_is_rolled_back(tdb: TenantDB, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant("shared")
    async with tdb.unit_of_work(tenant) as uow:
        await uow.connection.execute(insert(products).values(name="ghost", price=1))
    assert await ProductRepository(tdb).names(tenant) == []


async def test_readonly_unit_of_work_refuses_writes(tdb: TenantDB, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant("shared")
    async with tdb.unit_of_work(tenant, readonly=True) as uow:
        with pytest.raises(Exception, match="read-only transaction"):
            await uow.connection.execute(insert(products).values(name="x", price=1))


async def test_unknown_tenant_is_refused_never_defaulted(tdb: TenantDB) -> None:
    with pytest.raises(TenantNotFound):
        async with tdb.unit_of_work(uuid.uuid4()):
            pass


@pytest.mark.parametrize("status", ["suspended", "deleted"])
async def test_unavailable_tenant_is_refused(tdb: TenantDB, make_tenant: MakeTenant, status: str) -> None:
    tenant = await make_tenant("shared", status=status)
    with pytest.raises(TenantUnavailable, match=status):
        async with tdb.unit_of_work(tenant):
            pass


async def test_directory_caches_and_single_flights(tdb: TenantDB, make_tenant: MakeTenant) -> None:
    import asyncio

    tenant = await make_tenant("shared")
    placements = await asyncio.gather(*(tdb.directory.get(tenant) for _ in range(20)))
    assert {p.tenant_type for p in placements} == {"shared"}
    assert len({id(p) for p in placements}) == 1  # one query answered all twenty


async def test_rls_counts_match_explicit_filter(tdb: TenantDB, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant("shared")
    repo = ProductRepository(tdb)
    for i in range(5):
        await repo.add(tenant, f"p{i}", f"sku{i}", Decimal(i))
    async with tdb.unit_of_work(tenant, readonly=True) as uow:
        assert (await uow.connection.execute(select(func.count()).select_from(products))).scalar_one() == 5
