"""Dedicated engines: bounded LRU, idle ones disposed, each database behind its own credentials."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from tenantdb import dedicated_database_name
from tenantdb.placement import dedicated_password
from tenantschema.tables import products

from tests.integration.tenantdb.conftest import MakeTenant, MakeTenantDB, dedicated_secret


async def _open_tenant_connections(admin_url: str, application_name: str) -> int:
    """Connections to dedicated databases opened by the TenantDB under test (other processes, such as
    the stack's services, hold their own)."""
    conn = await asyncpg.connect(admin_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'tenant\\_%' AND application_name = $1",
            application_name,
        )
        return count
    finally:
        await conn.close()


@pytest.mark.slow
async def test_burst_over_many_dedicated_tenants_stays_under_the_bound(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    tenants = [await make_tenant("dedicated") for _ in range(6)]
    name = f"test-{uuid.uuid4().hex[:8]}"
    tdb = make_tenantdb(
        max_dedicated_engines=2, dedicated_pool_size=1, dedicated_max_overflow=0, application_name=name
    )
    bound = 2 * 1
    for _ in range(3):
        for tenant in tenants:
            async with tdb.unit_of_work(tenant, readonly=True) as uow:
                await uow.connection.execute(select(products.c.id))
            assert len(tdb.dedicated) <= 2
            await tdb.dedicated.settle()
            assert await _open_tenant_connections(admin_url, name) <= bound
    await tdb.dedicated.dispose_all()  # wait for evictions still disposing
    assert await _open_tenant_connections(admin_url, name) == 0


async def test_evicted_engines_close_their_connections(
    make_tenantdb: MakeTenantDB, make_tenant: MakeTenant, admin_url: str
) -> None:
    tenants = [await make_tenant("dedicated") for _ in range(3)]
    name = f"test-{uuid.uuid4().hex[:8]}"
    tdb = make_tenantdb(
        max_dedicated_engines=1, dedicated_pool_size=1, dedicated_max_overflow=0, application_name=name
    )
    for tenant in tenants:
        async with tdb.unit_of_work(tenant, readonly=True) as uow:
            await uow.connection.execute(select(products.c.id))
    await tdb.dedicated.settle()
    assert len(tdb.dedicated) == 1
    assert await _open_tenant_connections(admin_url, name) <= 1


async def test_a_tenants_credentials_cannot_open_another_tenants_database(
    make_tenant: MakeTenant, shared_url: str
) -> None:
    a, b = await make_tenant("dedicated"), await make_tenant("dedicated")
    db_a, db_b = dedicated_database_name(a), dedicated_database_name(b)
    server = make_url(shared_url)
    a_creds = server.set(username=db_a, password=dedicated_password(dedicated_secret(), db_a))
    # Its own database: yes.
    conn = await asyncpg.connect(a_creds.set(database=db_a).render_as_string(hide_password=False))
    await conn.close()
    # B's database, or the shared one: no.
    for database in (db_b, "shared", "platform"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncpg.connect(a_creds.set(database=database).render_as_string(hide_password=False))
    # And the services' role cannot open a dedicated database either.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(server.set(database=db_a).render_as_string(hide_password=False))
