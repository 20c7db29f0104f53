"""Engines: one for the shared database, one per dedicated database in a bounded LRU.

Every engine runs in AUTOCOMMIT at the driver level: tenantdb itself sends BEGIN, together with the
tenant context and the fence check, in one round trip (see unit_of_work.py). A pool `reset` hook
rolls back any transaction still open when a connection is returned, so a connection can never carry
a tenant's transaction-local context to its next user.
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


class DedicatedEngines:
    """At most `max_engines` dedicated engines; the least recently used idle one is disposed first."""

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
        self._engines: OrderedDict[str, AsyncEngine] = OrderedDict()
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
        engine = self._engines.get(database)
        if engine is not None:
            self._engines.move_to_end(database)
            return engine
        engine = create_engine(
            url(), pgbouncer=self._pgbouncer, application_name=self._application_name, **self._options
        )
        self._engines[database] = engine
        self._evict()
        DEDICATED_ENGINES.set(len(self._engines))
        return engine

    def _evict(self) -> None:
        excess = len(self._engines) - self._max
        if excess <= 0:
            return
        for database in list(self._engines)[:-1]:
            if excess == 0:
                break
            engine = self._engines[database]
            if _checked_out(engine):
                continue  # in use: disposing would strand its connections; try the next one
            del self._engines[database]
            excess -= 1
            task = asyncio.get_running_loop().create_task(engine.dispose())
            self._disposals.add(task)
            task.add_done_callback(self._disposals.discard)
            log.info("dedicated engine evicted", database=database)

    async def settle(self) -> None:
        """Wait for evicted engines to finish closing their connections."""
        await asyncio.gather(*self._disposals)

    async def dispose_all(self) -> None:
        engines = list(self._engines.values())
        self._engines.clear()
        DEDICATED_ENGINES.set(0)
        await asyncio.gather(*(e.dispose() for e in engines), *self._disposals)


def _checked_out(engine: AsyncEngine) -> int:
    pool = engine.sync_engine.pool
    checked_out = getattr(pool, "checkedout", None)
    return int(checked_out()) if callable(checked_out) else 0
