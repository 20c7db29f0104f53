"""Engines: one for the shared database, one per dedicated database in a bounded LRU.

Every engine runs in AUTOCOMMIT at the driver level: tenantdb itself sends BEGIN, together with the
tenant context and the fence check, in one round trip (see unit_of_work.py). A pool `reset` hook
rolls back any transaction still open when a connection is returned, so a connection can never carry
a tenant's transaction-local context to its next user. Each engine's pool is a `CachingQueuePool`,
with a `ConnectionCache` in front of it (connections.py) that units of work go through.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_
from tenantschema.urls import asyncpg_url

from tenantdb.connections import CachingQueuePool, ConnectionCache
from tenantdb.metrics import DEDICATED_ENGINES

log = structlog.get_logger("tenantdb.engines")


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"


def create_engine(
    url: str | URL,
    *,
    pool_size: int,
    max_overflow: int,
    recycle: int,
    pgbouncer: bool,
    application_name: str = "tenantdb",
    pool_timeout: float = 30.0,
) -> AsyncEngine:
    connect_args: dict[str, Any] = {"server_settings": {"application_name": application_name}}
    options: dict[str, Any] = {}
    if pgbouncer:
        # PgBouncer (transaction pooling) does the pooling and may hand each transaction another server
        # connection: no cached prepared statements, unique names, and no second pool here.
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
        options["poolclass"] = NullPool
    else:
        options |= {
            "poolclass": CachingQueuePool,
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_recycle": recycle,
            "pool_timeout": pool_timeout,
        }
    engine = create_async_engine(
        asyncpg_url(url),
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=False,
        connect_args=connect_args,
        **options,
    )
    event.listen(engine.sync_engine, "reset", _rollback_open_transaction)
    return engine


def _rollback_open_transaction(dbapi_connection: Any, _record: Any, _state: Any) -> None:
    """Safety net on check-in: never pool a connection inside a transaction (it holds tenant context)."""
    driver = dbapi_connection.driver_connection
    if driver is not None and not driver.is_closed() and driver.is_in_transaction():
        log.warning("connection returned inside a transaction; rolling back")
        await_(driver.execute("ROLLBACK"))


def connection_cache(
    engine: AsyncEngine, *, pool_size: int, max_overflow: int, pool_timeout: float, recycle: int
) -> ConnectionCache:
    """The cache units of work take the engine's connections from (a pass-through under PgBouncer)."""
    return ConnectionCache(
        engine, pool_size=pool_size, max_overflow=max_overflow, timeout=pool_timeout, recycle=recycle
    )


class DedicatedEngines:
    """At most `max_engines` dedicated engines; the least recently used idle one is disposed first
    (its cached idle connections do not make it busy: they are closed with it)."""

    def __init__(
        self,
        *,
        max_engines: int,
        pool_size: int,
        max_overflow: int,
        recycle: int,
        pgbouncer: bool,
        application_name: str = "tenantdb",
        pool_timeout: float = 30.0,
    ) -> None:
        self._engines: OrderedDict[str, ConnectionCache] = OrderedDict()
        self._max = max_engines
        self._options: dict[str, Any] = {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "recycle": recycle,
            "pool_timeout": pool_timeout,
        }
        self._pgbouncer = pgbouncer
        self._application_name = application_name
        self._disposals: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._engines)

    def get(self, database: str, url: Callable[[], URL]) -> AsyncEngine:
        """The database's engine; `url` is called only when one has to be created (it derives a
        password: not work for every unit of work)."""
        return self.cache(database, url).engine

    def cache(self, database: str, url: Callable[[], URL]) -> ConnectionCache:
        """The connection cache in front of the database's engine (created with the engine)."""
        cache = self._engines.get(database)
        if cache is not None:
            self._engines.move_to_end(database)
            return cache
        engine = create_engine(
            url(), pgbouncer=self._pgbouncer, application_name=self._application_name, **self._options
        )
        cache = connection_cache(engine, **self._options)
        self._engines[database] = cache
        self._evict()
        DEDICATED_ENGINES.set(len(self._engines))
        return cache

    def _evict(self) -> None:
        excess = len(self._engines) - self._max
        if excess <= 0:
            return
        for database in list(self._engines)[:-1]:
            if excess == 0:
                break
            cache = self._engines[database]
            if cache.in_use or _checked_out(cache.engine) > cache.idle:
                continue  # in use: disposing would strand its connections; try the next one
            del self._engines[database]
            excess -= 1
            cache.closed = True  # from now on its connections go back to SQLAlchemy, not the cache
            task = asyncio.get_running_loop().create_task(_dispose(cache))
            self._disposals.add(task)
            task.add_done_callback(self._disposals.discard)
            log.info("dedicated engine evicted", database=database)

    async def settle(self) -> None:
        """Wait for evicted engines to finish closing their connections."""
        await asyncio.gather(*self._disposals)

    async def dispose_all(self) -> None:
        caches = list(self._engines.values())
        self._engines.clear()
        DEDICATED_ENGINES.set(0)
        await asyncio.gather(*(_dispose(c) for c in caches), *self._disposals)


async def _dispose(cache: ConnectionCache) -> None:
    """Close the cached idle connections first: disposing closes only connections SQLAlchemy holds."""
    await cache.close()
    await cache.engine.dispose()


def _checked_out(engine: AsyncEngine) -> int:
    pool = engine.sync_engine.pool
    checked_out = getattr(pool, "checkedout", None)
    return int(checked_out()) if callable(checked_out) else 0
