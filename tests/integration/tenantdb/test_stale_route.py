"""A process that has not heard of a move yet (its directory entry is fresh, the placement_changed
event not arrived) routes the tenant to its old dedicated database. If that database is already gone
(the move's cleanup dropped it and its role), the login is refused: tenantdb re-reads the directory
once and serves the request where the tenant is now, instead of failing it."""

from __future__ import annotations

import asyncpg
from sqlalchemy import func, select
from tenantdb import TenantDB
from tenantdb.fencing import flip_placement
from tenantdb.provisioning import drop_dedicated
from tenantschema.tables import products

from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.databases import role_url


async def test_a_route_to_a_dropped_dedicated_database_is_read_again(
    stack_env: dict[str, str], make_tenant: MakeTenant, tdb: TenantDB
) -> None:
    tenant_id = await make_tenant("dedicated")
    async with tdb.unit_of_work(tenant_id, readonly=True) as uow:  # the dedicated route, cached
        assert uow.placement.tenant_type == "dedicated"
        assert await uow.connection.scalar(select(func.count()).select_from(products)) == 0
    # Moved back to shared and cleaned up, with no event reaching this process.
    platform = await asyncpg.connect(role_url(stack_env, "migrator"))
    try:
        await flip_placement(platform, tenant_id, tenant_type="shared", database_name=None)
    finally:
        await platform.close()
    await tdb.close()  # its pooled connection to the old database goes with the database
    await drop_dedicated(stack_env["ADMIN_DATABASE_URL"], tenant_id)
    async with tdb.unit_of_work(tenant_id, readonly=True) as uow:
        assert uow.placement.tenant_type == "shared"
        assert await uow.connection.scalar(select(func.count()).select_from(products)) == 0
