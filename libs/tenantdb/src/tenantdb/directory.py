"""The tenant directory: each tenant's placement, read from the platform database, cached per process.

Entries live `ttl` seconds and are dropped at once by `invalidate` (fed by `tenant.placement_changed`
events, see subscriber.py, and by the fence: a unit of work turned away by a fence invalidates its
entry before it retries). Concurrent misses for one tenant share one query. Unknown tenants are not
cached: a tenant created a moment ago must be found.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantdb.errors import TenantNotFound
from tenantdb.metrics import DIRECTORY_INVALIDATIONS, DIRECTORY_LOOKUPS
from tenantdb.placement import Placement

_LOOKUP = text(
    "SELECT tenant_type, database_name, status, placement_epoch FROM tenants WHERE id = :tenant_id"
)


_HITS = DIRECTORY_LOOKUPS.labels("hit")
_MISSES = DIRECTORY_LOOKUPS.labels("miss")


@dataclass(slots=True)
class _Entry:
    placement: Placement
    expires_at: float


class TenantDirectory:
    def __init__(self, platform_engine: AsyncEngine, *, ttl: float) -> None:
        self._engine = platform_engine
        self._ttl = ttl
        self._entries: dict[uuid.UUID, _Entry] = {}
        self._loading: dict[uuid.UUID, asyncio.Future[Placement]] = {}
        # The highest epoch an event announced per tenant: a slower read of an older row is not cached.
        self._min_epoch: dict[uuid.UUID, int] = {}
        # Bumped whenever the set of databases in use may have changed (an invalidation, a dedicated
        # placement seen for the first time): lets others (the outbox relay's source list) refresh.
        self.generation = 0

    async def get(self, tenant_id: uuid.UUID) -> Placement:
        entry = self._entries.get(tenant_id)
        if entry is not None and entry.expires_at > time.monotonic():
            _HITS.inc()
            return entry.placement
        _MISSES.inc()
        return await self._load(tenant_id)

    def invalidate(self, tenant_id: uuid.UUID, *, epoch: int | None = None, reason: str = "event") -> None:
        self._entries.pop(tenant_id, None)
        self.generation += 1
        if epoch is not None:
            self._min_epoch[tenant_id] = max(epoch, self._min_epoch.get(tenant_id, 0))
        DIRECTORY_INVALIDATIONS.labels(reason).inc()

    def clear(self) -> None:
        self._entries.clear()

    async def _load(self, tenant_id: uuid.UUID) -> Placement:
        pending = self._loading.get(tenant_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Placement] = asyncio.get_running_loop().create_future()
        self._loading[tenant_id] = future
        try:
            placement = await self._query(tenant_id)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        else:
            future.set_result(placement)
            if placement.epoch >= self._min_epoch.get(tenant_id, 0):
                previous = self._entries.get(tenant_id)
                if not placement.is_shared and (previous is None or previous.placement != placement):
                    self.generation += 1
                self._entries[tenant_id] = _Entry(placement, time.monotonic() + self._ttl)
            return placement
        finally:
            del self._loading[tenant_id]

    async def _query(self, tenant_id: uuid.UUID) -> Placement:
        async with self._engine.connect() as connection:
            row = (await connection.execute(_LOOKUP, {"tenant_id": tenant_id})).first()
            await connection.rollback()
        if row is None:
            raise TenantNotFound(tenant_id)
        return Placement(
            tenant_id=tenant_id,
            tenant_type=row.tenant_type,
            database_name=row.database_name,
            status=row.status,
            epoch=row.placement_epoch,
        )
