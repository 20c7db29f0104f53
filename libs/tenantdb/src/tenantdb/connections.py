"""A per-engine cache of checked-out connections, so a unit of work skips SQLAlchemy's pool.

Checking a connection out of SQLAlchemy's pool and back in (`Connection.__init__`, the fairy's
checkout, `greenlet_spawn`, reset on return) cost ~18 % of a point read's CPU. tenantdb keeps the
`AsyncConnection`s it checked out (LIFO: the warmest first) and hands them from one unit of work to
the next. The cache is a pool in front of the pool, so it keeps the pool's promises:

- **Bound.** At most `pool_size + max_overflow` connections are out per engine (in use, idle here, or
  being opened), at most `pool_size` of them idle; beyond that they go back to SQLAlchemy.
- **FIFO hand-off.** When every slot is taken, a unit of work waits in this cache's own queue (never on
  SQLAlchemy's: a connection cached while someone waits there would strand the waiter) and is handed
  the next released connection, or the slot of a discarded one, directly. The wait is bounded by the
  pool timeout and ends in `sqlalchemy.exc.TimeoutError` (tenantdb's PoolExhausted). A waiter cancelled
  while something was being handed to it passes it on.
- **Only clean connections.** A connection is cached only when its driver is open, outside a
  transaction (the tenant context is transaction-local: a cached connection carries none) and younger
  than the pool's recycle age. Failure paths `discard()`: back to SQLAlchemy, slot freed.
- **Others still get connections.** Code that connects to the engine directly (health checks, the
  relay's sources) goes through `CachingQueuePool`: a checkout that would wait takes an idle cached
  connection back first, and while one waits, released connections go back to SQLAlchemy.
- **PgBouncer** (NullPool): no caching at all; PgBouncer is the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import sqlalchemy.exc
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

log = structlog.get_logger("tenantdb.connections")

# What a waiter is handed: a clean connection, or (None) the slot of one given back, to open anew.
_Handoff = AsyncConnection | None


class CachingQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, cooperating with the engine's `ConnectionCache`: a checkout
    that finds the pool empty and at its limit first takes an idle cached connection back, and while a
    checkout waits, `waiting` tells the cache to give released connections back rather than keep them."""

    cache: ConnectionCache | None = None
    waiting = 0

    def _do_get(self) -> ConnectionPoolEntry:
        if self._pool.empty() and self._overflow >= self._max_overflow:
            if self.cache is not None:
                self.cache.surrender_idle()  # runs in the checkout's greenlet: the close is synchronous
            if self._pool.empty():  # still none: this checkout waits for a check-in
                self.waiting += 1
                try:
                    return super()._do_get()
                finally:
                    self.waiting -= 1
        return super()._do_get()

    def recreate(self) -> CachingQueuePool:
        pool = super().recreate()
        assert isinstance(pool, CachingQueuePool)
        pool.cache = self.cache  # engine.dispose() swaps in a new pool: the cache stays attached
        return pool


class ConnectionCache:
    """The connections tenantdb keeps checked out of one engine between units of work."""

    __slots__ = (
        "_caching",
        "_held",
        "_idle",
        "_keep",
        "_limit",
        "_recycle",
        "_since",
        "_timeout",
        "_waiters",
        "closed",
        "engine",
    )

    def __init__(
        self, engine: AsyncEngine, *, pool_size: int, max_overflow: int, timeout: float, recycle: float
    ) -> None:
        self.engine = engine
        pool = engine.sync_engine.pool
        self._caching = isinstance(pool, CachingQueuePool)  # not under PgBouncer (NullPool)
        if isinstance(pool, CachingQueuePool):
            pool.cache = self
        self._limit = pool_size + max_overflow
        self._keep = pool_size
        self._timeout = timeout
        self._recycle = recycle
        self._idle: list[AsyncConnection] = []  # a stack: the most recently used on top
        self._since: dict[AsyncConnection, float] = {}  # when each was checked out of SQLAlchemy
        self._held = 0  # slots taken: connections out of SQLAlchemy (in use, idle, being opened)
        self._waiters: deque[asyncio.Future[_Handoff]] = deque()
        self.closed = False

    @property
    def in_use(self) -> int:
        """Connections held by units of work (or being opened, or waited for); idle ones do not count."""
        return self._held - len(self._idle) + len(self._waiters)

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self) -> AsyncConnection:
        if not self._caching:
            return await self.engine.connect()
        # Synchronous up to the first await: a slot is taken before anyone (eviction) can look.
        idle = self._idle
        if idle:
            connection = idle.pop()
            if self._fresh(connection):
                return connection
            try:
                await self._give_back(connection, keep_slot=True)  # stale: its slot opens a new one
            except BaseException:
                self._free_slot()
                raise
            return await self._open()
        if self._held < self._limit:
            self._held += 1
            return await self._open()
        handed = await self._wait()
        return handed if handed is not None else await self._open()

    async def release(self, connection: AsyncConnection) -> None:
        """A unit of work ended cleanly: the connection goes to the next waiter, the cache, or back."""
        if not self._caching:
            await connection.close()
            return
        if self._reusable(connection):
            waiters = self._waiters
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(connection)
                    return
            if not self.closed and len(self._idle) < self._keep and not self._outside_waiting():
                self._idle.append(connection)
                return
        await self._give_back(connection)

    async def discard(self, connection: AsyncConnection) -> None:
        """After a failure: never cached; back to SQLAlchemy (which pools it only if it is valid)."""
        if not self._caching:
            await connection.close()
            return
        await self._give_back(connection)

    def surrender_idle(self) -> None:
        """Give the least recently used idle connection back to SQLAlchemy, synchronously: called by
        `CachingQueuePool` inside a checkout's greenlet, when that checkout would otherwise wait."""
        if not self._idle:
            return
        connection = self._idle.pop(0)
        self._since.pop(connection, None)
        self._held -= 1  # no waiters here: they exist only while nothing is idle
        connection.sync_connection.close()  # type: ignore[union-attr]

    async def close(self) -> None:
        """Stop caching and give every idle connection back (before the engine is disposed)."""
        self.closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._give_back(connection)

    async def _open(self) -> AsyncConnection:
        """Check a connection out of SQLAlchemy into a slot already taken; a failure frees the slot."""
        try:
            connection = await self.engine.connect()
        except BaseException:
            self._free_slot()
            raise
        self._since[connection] = time.monotonic()
        return connection

    async def _wait(self) -> _Handoff:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Handoff] = loop.create_future()
        self._waiters.append(waiter)
        started = time.perf_counter()
        # A timer on the future rather than asyncio.timeout(): no task cancellation on every wait.
        timer = loop.call_later(self._timeout, _expire, waiter)
        try:
            return await waiter
        except _Expired:
            self._forget(waiter)
            raise sqlalchemy.exc.TimeoutError(
                f"no connection free within {time.perf_counter() - started:.2f}s"
            ) from None
        except BaseException:  # cancelled: whatever was being handed over goes to the next in line
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._pass_on(waiter.result())
            else:
                self._forget(waiter)
            raise
        finally:
            timer.cancel()

    def _forget(self, waiter: asyncio.Future[_Handoff]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):  # already popped by a hand-off that found it cancelled
            self._waiters.remove(waiter)

    def _pass_on(self, handed: _Handoff) -> None:
        if handed is None:
            self._free_slot()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(handed)
                return
        if not self.closed and len(self._idle) < self._keep:
            self._idle.append(handed)
            return
        # Nobody wants it: back to SQLAlchemy, in a task (this runs while unwinding a cancellation).
        task = asyncio.get_running_loop().create_task(self._give_back(handed))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _give_back(self, connection: AsyncConnection, *, keep_slot: bool = False) -> None:
        """Check the connection in to SQLAlchemy; a closed driver is invalidated (never re-pooled)."""
        self._since.pop(connection, None)
        try:
            driver = _driver(connection)
            if driver is None or driver.is_closed():
                await connection.invalidate()
            await connection.close()
        except Exception as error:  # a broken connection: SQLAlchemy has dropped it
            log.warning("giving a connection back failed", error=repr(error))
        finally:
            if not keep_slot:
                self._free_slot()

    def _free_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the first waiter: it opens a connection
                return
        self._held -= 1

    def _fresh(self, connection: AsyncConnection) -> bool:
        driver = _driver(connection)
        return (
            driver is not None
            and not driver.is_closed()
            and time.monotonic() - self._since.get(connection, 0.0) < self._recycle
        )

    def _reusable(self, connection: AsyncConnection) -> bool:
        driver = _driver(connection)
        return (
            driver is not None
            and not driver.is_closed()
            and not driver.is_in_transaction()
            and time.monotonic() - self._since.get(connection, 0.0) < self._recycle
        )

    def _outside_waiting(self) -> bool:
        pool = self.engine.sync_engine.pool
        return isinstance(pool, CachingQueuePool) and pool.waiting > 0


_background: set[asyncio.Task[None]] = set()


class _Expired(Exception):
    """A waiter's pool timeout passed with nothing handed to it."""


def _expire(waiter: asyncio.Future[_Handoff]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


def _driver(connection: AsyncConnection) -> Any:
    """The asyncpg connection, or None when the SQLAlchemy connection is closed or invalidated."""
    sync = connection.sync_connection
    if sync is None or sync.closed or sync.invalidated:
        return None
    return sync.connection.driver_connection
