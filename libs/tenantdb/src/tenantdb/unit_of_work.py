"""`TenantDB.unit_of_work(tenant_id)`: a transaction on the tenant's database, with its context set.

One round trip opens it: a single simple-protocol message carries
`BEGIN …; SET LOCAL app.current_tenant_id = '<id>'; SELECT tenantdb_enter('<id>', …)`, so neither the
tenant context nor the fence check costs a round trip of its own. The id is interpolated only after
being parsed as a UUID (its text form is hex digits and dashes); a bound parameter would need the
extended protocol, which cannot share a message with BEGIN. `SET LOCAL` is `set_config(…, true)`
without a query to plan: transaction-local, it ends with COMMIT or ROLLBACK and never outlives the
unit of work on a pooled connection. Read-only units of work leave out the fence check unless
`fence_reads` is set (see settings.py): they then cost the server no more than a plain BEGIN.

Same code for both placements: repositories write SQL against tenantschema.tables (no tenant_id);
on the shared database `tenant_id` is filled by its default from the context and filtered by RLS.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import sqlalchemy.exc
import structlog
from events.failures import sqlstates
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenantschema.fencing_ddl import FENCED_SQLSTATE

from tenantdb.connections import ConnectionCache
from tenantdb.directory import TenantDirectory
from tenantdb.engines import DedicatedEngines, connection_cache, create_engine
from tenantdb.errors import PlacementMisconfigured, PoolExhausted, TenantMoving, TenantUnavailable
from tenantdb.metrics import ACQUIRE_SECONDS, FENCED, FENCED_WAIT_SECONDS, ROUTED
from tenantdb.placement import AVAILABLE_STATUS, SUSPENDED_STATUS, Placement, dedicated_url
from tenantdb.settings import TenantDBSettings

log = structlog.get_logger("tenantdb")

LOCK_NOT_AVAILABLE = "55P03"
_ROLLBACK_TIMEOUT = 5.0
# A write probes the tenant's fence lock, waiting at most this long inside tenantdb_enter (0 would
# mean "no timeout" to PostgreSQL). When a cutover holds the lock, the connection goes back to the
# pool at once and the write backs off, so waiting writers of one tenant never starve the others.
FENCE_PROBE_MS = 1
_BACKOFF_FIRST = 0.01
_BACKOFF_MAX = 0.1


_LABELS: dict[tuple[str, bool], tuple[Any, Any]] = {}


def _metrics(kind: str, readonly: bool) -> tuple[Any, Any]:
    """The (acquire histogram, routed counter) children for a placement kind and mode, made once."""
    children = _LABELS.get((kind, readonly))
    if children is None:
        children = (ACQUIRE_SECONDS.labels(kind), ROUTED.labels(kind, "read" if readonly else "write"))
        _LABELS[(kind, readonly)] = children
    return children


class UnitOfWork:
    """One transaction for one tenant, opened by `async with tdb.unit_of_work(tenant_id) as uow`.

    Rolled back on exit unless `commit()` was called (a read-only one is committed: same effect).
    A plain class rather than a generator-based context manager: this sits on every request's path.
    """

    __slots__ = (
        "_cache",
        "_db",
        "_done",
        "_driver",
        "allow_suspended",
        "connection",
        "placement",
        "readonly",
        "tenant_id",
    )

    placement: Placement
    connection: AsyncConnection
    _cache: ConnectionCache

    def __init__(
        self, db: TenantDB, tenant_id: uuid.UUID, readonly: bool, allow_suspended: bool = False
    ) -> None:
        self._db = db
        self.tenant_id = tenant_id
        self.readonly = readonly
        self.allow_suspended = allow_suspended
        self._driver: Any = None
        self._done = False

    @property
    def driver(self) -> asyncpg.Connection:
        """The asyncpg connection under `connection`: same transaction, same tenant context. For hot
        paths where SQLAlchemy's per-statement work would cost more than the query (compile the
        statement once, e.g. `statement.compile(dialect=postgresql.asyncpg.dialect())`)."""
        driver: asyncpg.Connection = self._driver
        return driver

    async def commit(self) -> None:
        if self._done:
            raise RuntimeError("unit of work already finished")
        self._done = True
        await self._driver.execute("COMMIT")
        if not self.readonly:
            self._db._committed(self.placement)

    async def __aenter__(self) -> UnitOfWork:
        await self._db._open(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        if exc_type is not None:
            # Shielded: a second cancellation cannot strand the connection half cleaned; the error
            # (CancelledError included) propagates, since this returns None.
            await asyncio.shield(_close_after_failure(self._cache, self.connection, self._driver))
            return
        if not self._done:
            try:
                if self.readonly:
                    await self.commit()  # nothing to undo; COMMIT ends a read-only transaction as well
                else:
                    self._done = True
                    await _rollback_or_invalidate(self.connection, self._driver, failed=False)
            except BaseException:  # cancelled (or the connection broke) while ending the transaction
                await asyncio.shield(_close_after_failure(self._cache, self.connection, self._driver))
                raise
        # Kept checked out for the next unit of work when clean (connections.py); else given back.
        await self._cache.release(self.connection)


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
        if not driver.is_closed() and not driver.is_in_transaction():
            return  # clean; a closed driver (terminated, network) is invalidated: never pooled again
    except asyncio.CancelledError:
        raise  # never swallowed: the caller discards the connection (shielded) and re-raises
    except Exception as error:  # the connection is suspect: thrown away below
        log.warning("rollback failed; discarding connection", error=repr(error))
    await connection.invalidate()


def _begin_sql(tenant_id: uuid.UUID, shared: bool, readonly: bool, fenced: bool, wait_ms: int) -> str:
    tenant = str(tenant_id)  # a parsed uuid.UUID: only hex digits and dashes
    parts = [f"BEGIN ISOLATION LEVEL READ COMMITTED {'READ ONLY' if readonly else 'READ WRITE'}"]
    if shared:
        parts.append(f"SET LOCAL app.current_tenant_id = '{tenant}'")
    if fenced:
        parts.append(f"SELECT tenantdb_enter('{tenant}'::uuid, {'false' if readonly else 'true'}, {wait_ms})")
    return "; ".join(parts)


@functools.lru_cache(maxsize=16384)
def _read_begin_sql(tenant_id: uuid.UUID, shared: bool, fenced: bool) -> str:
    """Reads never wait, so their BEGIN depends only on the tenant and placement: built once."""
    return _begin_sql(tenant_id, shared, True, fenced, 1)


class TenantDB:
    """The routing library's entry point: build one per process, `await close()` at shutdown."""

    def __init__(self, settings: TenantDBSettings, *, directory: TenantDirectory | None = None) -> None:
        self.settings = settings
        common = {
            "recycle": settings.pool_recycle_seconds,
            "pgbouncer": settings.pgbouncer,
            "application_name": settings.application_name,
            "pool_timeout": settings.pool_timeout_seconds,
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
        # Units of work take the shared engine's connections from here (connections.py).
        self._shared_cache = connection_cache(
            self.shared_engine,
            pool_size=settings.shared_pool_size,
            max_overflow=settings.shared_max_overflow,
            pool_timeout=settings.pool_timeout_seconds,
            recycle=settings.pool_recycle_seconds,
        )
        self.dedicated = DedicatedEngines(
            max_engines=settings.max_dedicated_engines,
            pool_size=settings.dedicated_pool_size,
            max_overflow=settings.dedicated_max_overflow,
            **common,  # type: ignore[arg-type]
        )
        self.directory = directory or TenantDirectory(
            self.platform_engine,
            ttl=settings.directory_ttl_seconds,
            negative_ttl=settings.directory_negative_ttl_seconds,
            max_negative=settings.directory_negative_entries,
        )
        self._commit_listeners: list[Callable[[Placement], None]] = []
        self._workers: list[TenantDB] = []
        # Tenants whose fence lock a write found held (a cutover), while it probes again (_open).
        self._held: dict[uuid.UUID, _HeldTenant] = {}

    def for_worker(self, worker: str, *, pool_size: int = 2) -> TenantDB:
        """A TenantDB for a background worker (relay, consumers): its connections are named
        `<application_name>:<worker>` in pg_stat_activity, and it has pools of its own (small: `pool_size`
        shared connections, one per dedicated database), so background work never takes a request's
        connection. Cheap: engines connect lazily, the directory (cache, invalidations) and the commit
        listeners are this TenantDB's, and `close()` here closes the worker too."""
        settings = self.settings.model_copy(
            update={
                "application_name": f"{self.settings.application_name}:{worker}",
                "shared_pool_size": pool_size,
                "shared_max_overflow": 0,
                "dedicated_pool_size": 1,
                "dedicated_max_overflow": 0,
            }
        )
        worker_db = TenantDB(settings, directory=self.directory)
        worker_db._commit_listeners = self._commit_listeners
        self._workers.append(worker_db)
        return worker_db

    def on_commit(self, listener: Callable[[Placement], None]) -> None:
        """Call `listener(placement)` after every committed writing unit of work (e.g. to wake the
        outbox relay for that database). Listeners run inline: keep them short; errors are logged."""
        self._commit_listeners.append(listener)

    def _committed(self, placement: Placement) -> None:
        for listener in self._commit_listeners:
            try:
                listener(placement)
            except Exception:
                log.exception("commit listener failed", tenant_id=str(placement.tenant_id))

    async def close(self) -> None:
        for worker in self._workers:
            await worker.close()
        await self.dedicated.dispose_all()
        await self._shared_cache.close()
        await self.shared_engine.dispose()
        await self.platform_engine.dispose()

    def engine_for(self, placement: Placement) -> AsyncEngine:
        if placement.is_shared:
            return self.shared_engine
        return self._dedicated_cache(placement).engine

    def _dedicated_cache(self, placement: Placement) -> ConnectionCache:
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

        return self.dedicated.cache(database, url)

    async def placement(self, tenant_id: uuid.UUID) -> Placement:
        """The tenant's placement; TenantNotFound / TenantUnavailable when there is none to use."""
        return _available(await self.directory.get(tenant_id))

    def unit_of_work(
        self, tenant_id: uuid.UUID | str, *, readonly: bool = False, allow_suspended: bool = False
    ) -> UnitOfWork:
        """A transaction on the tenant's current placement: `async with tdb.unit_of_work(t) as uow`.

        Writes (the default) wait up to `write_wait_seconds` while a cutover holds the tenant, then run
        on the new placement, or fail with the retryable TenantMoving. Read-only units of work never
        wait, and PostgreSQL refuses any write inside them. A pool with no connection free within
        `pool_timeout_seconds` fails with the retryable PoolExhausted.

        `allow_suspended=True` opens it for a suspended tenant too (a deleted one stays refused):
        consumers applying events that already happened elsewhere, since a suspension can be undone
        and a read model must not drift meanwhile.
        """
        if not isinstance(tenant_id, uuid.UUID):
            tenant_id = uuid.UUID(str(tenant_id))
        return UnitOfWork(self, tenant_id, readonly, allow_suspended)

    async def _open(self, uow: UnitOfWork) -> None:
        """Check out a connection on the tenant's placement and begin its transaction (one round trip).

        A write that meets a cutover (the fence lock busy: 55P03) or a fence (TD001: a stale route)
        gives its connection back before it waits, until `write_wait_seconds` have passed. Holding no
        connection while waiting, a tenant being moved cannot starve the process's other tenants of
        the pool. And only one write per tenant and process probes the lock again (with jittered
        exponential backoff); the tenant's other writes wait for its word (`_HeldTenant`), so a
        thousand waiting writes cost what one does.
        """
        tenant_id, readonly = uow.tenant_id, uow.readonly
        fence_reads = self.settings.fence_reads
        started = time.perf_counter()
        deadline = started + self.settings.write_wait_seconds
        waiting_since: float | None = None
        rerouted = False
        reconnected = False  # retried once already after a dead connection
        rerouted_gone = False  # re-read the directory once already after a dedicated database was gone
        backoff = _BACKOFF_FIRST
        probing: _HeldTenant | None = None  # set while this write probes the lock for its tenant
        try:
            while True:
                if not readonly and self._held:  # empty unless a tenant of this process is at a cutover
                    held = self._held.get(tenant_id)
                    if held is not None and held is not probing:
                        waiting_since = waiting_since or time.perf_counter()
                        await _wait_for_word(held, tenant_id, deadline, started, waiting_since)
                        if not held.free and tenant_id not in self._held:
                            # The prober gave up (its own wait ran out): this write takes over.
                            probing = self._held[tenant_id] = _HeldTenant()
                        continue
                placement = await self.directory.get(tenant_id)
                if not (uow.allow_suspended and placement.status == SUSPENDED_STATUS):
                    _available(placement)
                shared = placement.is_shared
                cache = self._shared_cache if shared else self._dedicated_cache(placement)
                try:
                    connection = await _connect(cache, placement)
                except sqlalchemy.exc.DBAPIError as error:
                    if shared or rerouted_gone or not _database_gone(error):
                        raise
                    # A stale route to a dedicated database that is gone: a move away from it was
                    # cleaned up (its database and role dropped) before this process heard of the
                    # move. Nothing began; re-read the directory and go where the tenant is now.
                    self.directory.invalidate(tenant_id, reason="gone")
                    rerouted_gone = True
                    continue
                # Checked out already: reading it needs no I/O, so no greenlet hop (get_raw_connection has).
                driver: Any = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]
                if readonly:
                    begin = _read_begin_sql(tenant_id, shared, fence_reads)
                else:
                    begin = _begin_sql(tenant_id, shared, False, True, FENCE_PROBE_MS)
                try:
                    await driver.execute(begin)
                except asyncpg.PostgresError as error:
                    if _broken(error, driver):
                        await asyncio.shield(_discard_broken(cache, connection))
                        if reconnected:
                            raise
                        reconnected = True
                        continue
                    await asyncio.shield(_close_after_failure(cache, connection, driver))
                    if error.sqlstate not in (FENCED_SQLSTATE, LOCK_NOT_AVAILABLE):
                        raise
                    now = time.perf_counter()
                    waiting_since = waiting_since or now
                    if error.sqlstate == LOCK_NOT_AVAILABLE and probing is None:
                        if tenant_id in self._held:
                            continue  # another write probes already: wait for its word
                        probing = self._held[tenant_id] = _HeldTenant()
                    if error.sqlstate == FENCED_SQLSTATE:
                        # A stale route: the tenant moved off this database (so the lock is free: let
                        # the tenant's other writes go too). Re-read the directory and retry.
                        self._release(tenant_id, probing, free=True)
                        probing = None
                        self.directory.invalidate(tenant_id, reason="fenced")
                        rerouted = True
                    remaining = deadline - now
                    if remaining > 0:
                        # Not cryptographic: jitter, so writers released together do not retry together.
                        await asyncio.sleep(min(remaining, backoff * random.uniform(0.5, 1.0)))
                        backoff = min(backoff * 2, _BACKOFF_MAX)
                        continue
                    FENCED.labels("timeout").inc()
                    FENCED_WAIT_SECONDS.observe(now - waiting_since)
                    raise TenantMoving(tenant_id, now - started) from error
                except Exception as error:
                    if not _broken(error, driver):
                        await asyncio.shield(_close_after_failure(cache, connection, driver))
                        raise
                    # The connection died while idle (terminated, network): the BEGIN did nothing,
                    # so one retry on another connection is safe.
                    await asyncio.shield(_discard_broken(cache, connection))
                    if reconnected:
                        raise
                    reconnected = True
                    continue
                except BaseException:
                    await asyncio.shield(_close_after_failure(cache, connection, driver))
                    raise
                break
            self._release(tenant_id, probing, free=True)  # began: the lock was free
        finally:
            self._release(tenant_id, probing, free=False)  # failed or cancelled (no-op otherwise)

        if waiting_since is not None:
            FENCED.labels("rerouted" if rerouted else "waited").inc()
            FENCED_WAIT_SECONDS.observe(time.perf_counter() - waiting_since)
        acquire_seconds, routed = _metrics(placement.tenant_type, readonly)
        acquire_seconds.observe(time.perf_counter() - started)
        routed.inc()
        uow.placement, uow.connection, uow._driver, uow._cache = placement, connection, driver, cache

    def _release(self, tenant_id: uuid.UUID, probing: _HeldTenant | None, *, free: bool) -> None:
        """Stop probing for the tenant and tell its waiting writes whether the lock was free."""
        if probing is None or probing.opened.is_set():
            return
        if self._held.get(tenant_id) is probing:
            del self._held[tenant_id]
        probing.free = free
        probing.opened.set()


class _HeldTenant:
    """A tenant whose fence lock a write of this process found held (a cutover): that write probes it
    again and again; the tenant's other writes wait on `opened`. `free` says whether the lock was
    free when it opened (all go), or the prober gave up (one of the waiters takes over)."""

    __slots__ = ("free", "opened")

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.free = False


async def _wait_for_word(
    held: _HeldTenant, tenant_id: uuid.UUID, deadline: float, started: float, waiting_since: float
) -> None:
    remaining = deadline - time.perf_counter()
    try:
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            await held.opened.wait()
    except TimeoutError:
        now = time.perf_counter()
        FENCED.labels("timeout").inc()
        FENCED_WAIT_SECONDS.observe(now - waiting_since)
        raise TenantMoving(tenant_id, now - started) from None


async def _connect(cache: ConnectionCache, placement: Placement) -> AsyncConnection:
    """A pooled connection; a pool with none free in time is PoolExhausted (503), never a 500."""
    started = time.perf_counter()
    try:
        return await cache.acquire()
    except sqlalchemy.exc.TimeoutError:
        raise PoolExhausted(placement.tenant_type, time.perf_counter() - started) from None


# A login refused because the role is gone (28P01, 28000) or the database is (3D000).
_GONE_SQLSTATES = frozenset({"28P01", "28000", "3D000"})


def _database_gone(error: sqlalchemy.exc.DBAPIError) -> bool:
    return any(state in _GONE_SQLSTATES for state in sqlstates(error))


def _broken(error: Exception, driver: Any) -> bool:
    """Whether an error means the connection itself is gone, not that the statement failed."""
    if driver.is_closed() or isinstance(
        error, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError
    ):
        return True
    # Connection exceptions (08) and the server shutting the session down (57P01..57P03).
    sqlstate = getattr(error, "sqlstate", None) or ""
    return sqlstate.startswith(("08", "57P"))


async def _discard_broken(cache: ConnectionCache, connection: AsyncConnection) -> None:
    """Invalidated, so SQLAlchemy does not pool it either; its slot goes to the next waiter."""
    try:
        await connection.invalidate()
    except Exception as error:
        log.warning("invalidating a dead connection failed", error=repr(error))
    finally:
        await cache.discard(connection)


def _available(placement: Placement) -> Placement:
    if placement.status != AVAILABLE_STATUS:
        raise TenantUnavailable(placement.tenant_id, placement.status)
    return placement


async def _close_after_failure(cache: ConnectionCache, connection: AsyncConnection, driver: Any) -> None:
    """Never back into the cache: cleaned (or invalidated), given back to SQLAlchemy, slot freed."""
    try:
        await _rollback_or_invalidate(connection, driver)
    finally:
        await cache.discard(connection)
