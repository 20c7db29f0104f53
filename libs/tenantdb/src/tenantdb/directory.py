"""The tenant directory: each tenant's placement, read from the platform database, cached per process.

Entries live `ttl` seconds and are dropped at once by `invalidate` (fed by `tenant.placement_changed`
events, see subscriber.py, and by the fence: a unit of work turned away by a fence invalidates its
entry before it retries). Concurrent misses for one tenant share one query, run as a task of its own:
a waiter that is cancelled (its request timed out) leaves the query running for the others.

Unknown tenant ids are remembered as unknown for `negative_ttl` seconds (at most `max_negative` of
them, oldest forgotten first), so a flood of random ids costs one query per id and window, not one per
request; a tenant created meanwhile is found after at most `negative_ttl` (at once when its
`tenant.created` event reaches `forget_unknown`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantdb.errors import PoolExhausted, TenantNotFound
from tenantdb.metrics import DIRECTORY_INVALIDATIONS, DIRECTORY_LOOKUPS
from tenantdb.placement import Placement

_LOOKUP = text(
    "SELECT tenant_type, database_name, status, placement_epoch FROM tenants WHERE id = :tenant_id"
)


_HITS = DIRECTORY_LOOKUPS.labels("hit")
_MISSES = DIRECTORY_LOOKUPS.labels("miss")
_KNOWN_UNKNOWN = DIRECTORY_LOOKUPS.labels("unknown_cached")


@dataclass(slots=True)
class _Entry:
    placement: Placement
    expires_at: float


class TenantDirectory:
    def __init__(
        self,
        platform_engine: AsyncEngine,
        *,
        ttl: float,
        negative_ttl: float = 3.0,
        max_negative: int = 10_000,
    ) -> None:
        self._engine = platform_engine
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_negative = max_negative
        self._entries: dict[uuid.UUID, _Entry] = {}
        # Unknown tenant id -> until when it counts as unknown; insertion order is expiry order.
        self._unknown: OrderedDict[uuid.UUID, float] = OrderedDict()
        self._loading: dict[uuid.UUID, asyncio.Task[Placement]] = {}
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
        unknown_until = self._unknown.get(tenant_id)
        if unknown_until is not None:
            if unknown_until > time.monotonic():
                _KNOWN_UNKNOWN.inc()
                raise TenantNotFound(tenant_id)
            del self._unknown[tenant_id]
        _MISSES.inc()
        return await self._load(tenant_id)

    def invalidate(self, tenant_id: uuid.UUID, *, epoch: int | None = None, reason: str = "event") -> None:
        self._entries.pop(tenant_id, None)
        self._unknown.pop(tenant_id, None)
        # A lookup in flight may have read the row before the change: let it finish for its waiters,
        # but not into the cache, and let the next caller query afresh.
        self._loading.pop(tenant_id, None)
        self.generation += 1
        if epoch is not None:
            self._min_epoch[tenant_id] = max(epoch, self._min_epoch.get(tenant_id, 0))
        DIRECTORY_INVALIDATIONS.labels(reason).inc()

    def forget_unknown(self, tenant_id: uuid.UUID) -> bool:
        """The tenant exists now (tenant.created): stop answering TenantNotFound from the cache."""
        return self._unknown.pop(tenant_id, None) is not None

    def clear(self) -> None:
        self._entries.clear()
        self._unknown.clear()

    async def _load(self, tenant_id: uuid.UUID) -> Placement:
        task = self._loading.get(tenant_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._lookup(tenant_id))
            self._loading[tenant_id] = task
            task.add_done_callback(lambda done: self._loaded(tenant_id, done))
        # Shielded: cancelling one waiter cancels its wait only, never the shared lookup.
        return await asyncio.shield(task)

    def _loaded(self, tenant_id: uuid.UUID, task: asyncio.Task[Placement]) -> None:
        if self._loading.get(tenant_id) is task:
            del self._loading[tenant_id]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter re-raises it itself (none may be left)

    async def _lookup(self, tenant_id: uuid.UUID) -> Placement:
        """The query, and its result into the cache unless invalidated meanwhile."""
        current = asyncio.current_task()
        try:
            placement = await self._query(tenant_id)
        except TenantNotFound:
            if self._loading.get(tenant_id) is current:
                self._remember_unknown(tenant_id)
            raise
        if self._loading.get(tenant_id) is current and placement.epoch >= self._min_epoch.get(tenant_id, 0):
            previous = self._entries.get(tenant_id)
            if not placement.is_shared and (previous is None or previous.placement != placement):
                self.generation += 1
            self._entries[tenant_id] = _Entry(placement, time.monotonic() + self._ttl)
        return placement

    def _remember_unknown(self, tenant_id: uuid.UUID) -> None:
        if self._negative_ttl <= 0 or self._max_negative <= 0:
            return
        self._unknown[tenant_id] = time.monotonic() + self._negative_ttl
        self._unknown.move_to_end(tenant_id)
        while len(self._unknown) > self._max_negative:
            self._unknown.popitem(last=False)

    async def _query(self, tenant_id: uuid.UUID) -> Placement:
        started = time.perf_counter()
        try:
            connection = await self._engine.connect()
        except sqlalchemy.exc.TimeoutError:
            raise PoolExhausted("platform", time.perf_counter() - started) from None
        try:
            row = (await connection.execute(_LOOKUP, {"tenant_id": tenant_id})).first()
            await connection.rollback()
        finally:
            await connection.close()
        if row is None:
            raise TenantNotFound(tenant_id)
        return Placement(
            tenant_id=tenant_id,
            tenant_type=row.tenant_type,
            database_name=row.database_name,
            status=row.status,
            epoch=row.placement_epoch,
        )
