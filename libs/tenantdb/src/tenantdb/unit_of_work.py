"""`TenantDB.unit_of_work(tenant_id)`: a transaction on the tenant's database, with its context set.

One round trip opens it: a single simple-protocol message carries
`BEGIN; SELECT set_config('app.current_tenant_id', '<id>', true), tenantdb_enter('<id>', ...)`,
so the tenant context costs no round trip of its own. The id is interpolated only after being parsed
as a UUID (its text form is hex digits and dashes); a bound parameter would need the extended
protocol, which cannot share a message with BEGIN. The setting is transaction-local (`true`): it
ends with COMMIT or ROLLBACK and never outlives the unit of work on a pooled connection.

Same code for both placements: repositories write SQL against tenantschema.tables (no tenant_id);
on the shared database `tenant_id` is filled by its default from the context and filtered by RLS.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenantschema.fencing_ddl import FENCED_SQLSTATE

from tenantdb.directory import TenantDirectory
from tenantdb.engines import DedicatedEngines, create_engine
from tenantdb.errors import PlacementMisconfigured, TenantMoving, TenantUnavailable
from tenantdb.metrics import ACQUIRE_SECONDS, FENCED, FENCED_WAIT_SECONDS, ROUTED
from tenantdb.placement import AVAILABLE_STATUS, Placement, dedicated_url
from tenantdb.settings import TenantDBSettings

log = structlog.get_logger("tenantdb")

LOCK_NOT_AVAILABLE = "55P03"
_ROLLBACK_TIMEOUT = 5.0


@functools.cache
def _acquire_seconds(kind: str) -> Any:
    return ACQUIRE_SECONDS.labels(kind)


@functools.cache
def _routed(kind: str, readonly: bool) -> Any:
    return ROUTED.labels(kind, "read" if readonly else "write")


class UnitOfWork:
    """One transaction for one tenant. Rolled back on exit unless `commit()` was called."""

    def __init__(
        self,
        tenant_id: uuid.UUID,
        placement: Placement,
        connection: AsyncConnection,
        driver: Any,
        readonly: bool,
    ) -> None:
        self.tenant_id = tenant_id
        self.placement = placement
        self.connection = connection
        self.readonly = readonly
        self._driver = driver
        self._done = False

    @property
    def committed(self) -> bool:
        return self._done

    async def commit(self) -> None:
        if self._done:
            raise RuntimeError("unit of work already finished")
        self._done = True
        await self._driver.execute("COMMIT")

    async def _rollback(self) -> None:
        self._done = True
        await _rollback_or_invalidate(self.connection, self._driver, failed=False)


async def _rollback_or_invalidate(connection: AsyncConnection, driver: Any, *, failed: bool = True) -> None:
    """End any open transaction; a connection that cannot be cleaned is thrown away, never pooled.

    After a failure (exception, cancellation) the ROLLBACK is bounded by a timeout; on the happy path
    it is a plain await (no extra task on every request).
    """
    try:
        if not driver.is_closed() and driver.is_in_transaction():
            if failed:
                await asyncio.wait_for(driver.execute("ROLLBACK"), _ROLLBACK_TIMEOUT)
            else:
                await driver.execute("ROLLBACK")
        if driver.is_closed() or not driver.is_in_transaction():
            return
    except (Exception, asyncio.CancelledError) as error:  # the connection is suspect either way
        log.warning("rollback failed; discarding connection", error=repr(error))
    await connection.invalidate()


def _begin_sql(placement: Placement, readonly: bool, wait_ms: int) -> str:
    tenant = str(placement.tenant_id)  # a parsed uuid.UUID: only hex digits and dashes
    mode = "READ ONLY" if readonly else "READ WRITE"
    enter = f"tenantdb_enter('{tenant}'::uuid, {'false' if readonly else 'true'}, {wait_ms})"
    if placement.is_shared:
        return (
            f"BEGIN ISOLATION LEVEL READ COMMITTED {mode}; "
            f"SELECT set_config('app.current_tenant_id', '{tenant}', true), {enter}"
        )
    return f"BEGIN ISOLATION LEVEL READ COMMITTED {mode}; SELECT {enter}"


class TenantDB:
    """The routing library's entry point: build one per process, `await close()` at shutdown."""

    def __init__(self, settings: TenantDBSettings) -> None:
        self.settings = settings
        common = {
            "recycle": settings.pool_recycle_seconds,
            "pgbouncer": settings.pgbouncer,
            "application_name": settings.application_name,
        }
        self.platform_engine = create_engine(
            settings.platform_database_url,
            pool_size=2,
            max_overflow=4,
            **common,  # type: ignore[arg-type]
        )
        self.shared_engine = create_engine(
            settings.shared_database_url,
            pool_size=settings.shared_pool_size,
            max_overflow=settings.shared_max_overflow,
            **common,  # type: ignore[arg-type]
        )
        self.dedicated = DedicatedEngines(
            max_engines=settings.max_dedicated_engines,
            pool_size=settings.dedicated_pool_size,
            max_overflow=settings.dedicated_max_overflow,
            **common,  # type: ignore[arg-type]
        )
        self.directory = TenantDirectory(self.platform_engine, ttl=settings.directory_ttl_seconds)

    async def close(self) -> None:
        await self.dedicated.dispose_all()
        await self.shared_engine.dispose()
        await self.platform_engine.dispose()

    def engine_for(self, placement: Placement) -> AsyncEngine:
        if placement.is_shared:
            return self.shared_engine
        if not placement.database_name:
            raise PlacementMisconfigured(f"dedicated tenant {placement.tenant_id} has no database_name")
        database = placement.database_name

        def url() -> URL:
            secret = self.settings.dedicated_password_secret
            return dedicated_url(
                self.settings.dedicated_database_url_template,
                self.settings.shared_database_url,
                database,
                secret.get_secret_value() if secret else None,
            )

        return self.dedicated.get(database, url)

    async def placement(self, tenant_id: uuid.UUID) -> Placement:
        """The tenant's placement; TenantNotFound / TenantUnavailable when there is none to use."""
        placement = await self.directory.get(tenant_id)
        if placement.status != AVAILABLE_STATUS:
            raise TenantUnavailable(tenant_id, placement.status)
        return placement

    @asynccontextmanager
    async def unit_of_work(
        self, tenant_id: uuid.UUID, *, readonly: bool = False
    ) -> AsyncIterator[UnitOfWork]:
        """A transaction on the tenant's current placement.

        Writes (the default) wait up to `write_wait_seconds` while a cutover holds the tenant, then run
        on the new placement, or fail with the retryable TenantMoving. Read-only units of work never
        wait, and PostgreSQL refuses any write inside them.
        """
        tenant_id = uuid.UUID(str(tenant_id))
        started = time.perf_counter()
        deadline = started + self.settings.write_wait_seconds
        fenced_since: float | None = None
        backoff = 0.02
        while True:
            placement = await self.placement(tenant_id)
            engine = self.engine_for(placement)
            connection = await engine.connect()
            # Already checked out: reading it needs no I/O, so no greenlet hop (get_raw_connection has one).
            driver: Any = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]
            wait_ms = max(1, int((deadline - time.perf_counter()) * 1000))
            try:
                await driver.execute(_begin_sql(placement, readonly, wait_ms))
            except asyncpg.PostgresError as error:
                await _rollback_or_invalidate(connection, driver)
                await connection.close()
                fenced_since = fenced_since or time.perf_counter()
                if error.sqlstate == FENCED_SQLSTATE:
                    # A stale route: the tenant moved off this database. Re-read the directory and retry.
                    self.directory.invalidate(tenant_id, reason="fenced")
                    if time.perf_counter() + backoff < deadline:
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 0.25)
                        continue
                if error.sqlstate in (FENCED_SQLSTATE, LOCK_NOT_AVAILABLE):
                    waited = time.perf_counter() - fenced_since
                    FENCED.labels("timeout").inc()
                    FENCED_WAIT_SECONDS.observe(waited)
                    raise TenantMoving(tenant_id, time.perf_counter() - started) from error
                raise
            except BaseException:
                await asyncio.shield(_close_after_failure(connection, driver))
                raise
            break

        if fenced_since is not None:
            FENCED.labels("rerouted").inc()
            FENCED_WAIT_SECONDS.observe(time.perf_counter() - fenced_since)
        kind = placement.tenant_type
        _acquire_seconds(kind).observe(time.perf_counter() - started)
        _routed(kind, readonly).inc()
        uow = UnitOfWork(tenant_id, placement, connection, driver, readonly)
        try:
            yield uow
        except BaseException:
            await asyncio.shield(_close_after_failure(connection, driver))
            raise
        else:
            if not uow.committed:
                await uow._rollback()
            await connection.close()


async def _close_after_failure(connection: AsyncConnection, driver: Any) -> None:
    await _rollback_or_invalidate(connection, driver)
    await connection.close()
