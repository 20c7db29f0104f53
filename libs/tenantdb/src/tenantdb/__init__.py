"""tenantdb: a tenant id in, a unit of work on the tenant's database out.

    tdb = TenantDB(get_settings())
    async with tdb.unit_of_work(tenant_id) as uow:
        await uow.connection.execute(insert(products).values(...))
        await uow.commit()

See README.md for the routing rules and the fencing protocol the migrator implements its half of.
"""

from tenantdb.directory import TenantDirectory
from tenantdb.errors import (
    CutoverLockTimeout,
    PlacementMisconfigured,
    PoolExhausted,
    TenantDBError,
    TenantMoving,
    TenantNotFound,
    TenantUnavailable,
)
from tenantdb.placement import Placement, dedicated_database_name
from tenantdb.settings import TenantDBSettings, get_settings
from tenantdb.unit_of_work import TenantDB, UnitOfWork

__all__ = [
    "CutoverLockTimeout",
    "Placement",
    "PlacementMisconfigured",
    "PoolExhausted",
    "TenantDB",
    "TenantDBError",
    "TenantDBSettings",
    "TenantDirectory",
    "TenantMoving",
    "TenantNotFound",
    "TenantUnavailable",
    "UnitOfWork",
    "dedicated_database_name",
    "get_settings",
]
