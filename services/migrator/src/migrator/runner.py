"""The phase machine: runs every active migration found in `tenant_migrations`, one task each, under a
platform advisory lock per migration (two migrator processes never run the same move; a killed one's
lock dies with its session, and the survivor or the restarted process resumes it).

Each phase is idempotent and records where it got in `progress` after each step, so a process killed
anywhere resumes at the phase and step it had recorded:

  provision -> capture -> copy -> catch_up -> verify -> cutover -> cleanup -> done

Before the cutover a failure (or a cancel) rolls back: capture dropped, target removed, tenant
untouched. From the cutover on, the move can only be finished; the cutover itself holds the tenant's
writes for at most `migrator_drain_timeout_seconds` to begin with, and on any abort releases them
and retries later (README.md, "Cutover").

`MIGRATOR_CRASH_AT=<phase>[:<step>]` kills the process with SIGKILL at that point (fault tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import structlog
from events import topics
from events.outbox import record, record_on
from servicekit.platform import PlatformDB
from sqlalchemy import Row, func
from sqlalchemy.engine import make_url
from tenantdb.errors import CutoverLockTimeout
from tenantdb.fencing import Cutover, flip_placement, lock_directory_row
from tenantdb.placement import dedicated_database_name
from tenantschema.tables import TENANT_TABLES
from tenantschema.urls import libpq_url, with_database

from migrator import domain, metrics, moves, placement_repository, placement_usecases, repository, triggers
from migrator.domain import Direction, ObjectNames
from migrator.moves import ZERO_ID, Endpoint
from migrator.provisioner import Provisioner
from migrator.settings import MigratorSettings

log = structlog.get_logger("migrator.runner")

CRASH_ENV = "MIGRATOR_CRASH_AT"
TRANSIENT_RETRY_SECONDS = 1.0
MAX_TRANSIENT_RETRIES = 60
VERIFY_PASSES = 5


_CRASH_HITS: dict[str, int] = {}


def crash_point(phase: str, step: str | None = None) -> None:
    """SIGKILL this process here when MIGRATOR_CRASH_AT names this point (fault tests only);
    `point@N`: the Nth time it is reached."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point in (phase, f"{phase}:{step}"):
        _CRASH_HITS[point] = _CRASH_HITS.get(point, 0) + 1
        if _CRASH_HITS[point] >= int(nth or 1):
            log.warning("crash point reached: SIGKILL", point=wanted)
            os.kill(os.getpid(), signal.SIGKILL)


class CutoverAborted(Exception):
    """The cutover released the tenant without flipping (retried later)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Cancelled(Exception):
    """A cancel was asked for while a phase ran: it stops at its next step and the move rolls back."""


def _transient(error: BaseException) -> bool:
    return isinstance(
        error,
        (
            OSError,
            asyncio.TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.LockNotAvailableError,
            asyncpg.SerializationError,
            asyncpg.DeadlockDetectedError,
            asyncpg.QueryCanceledError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
            CutoverLockTimeout,
        ),
    )


async def _together(*steps: Awaitable[Any]) -> list[Any]:
    """`asyncio.gather`, except that when one step fails the others are cancelled and waited for
    before the first error is raised: nothing of a failed phase runs on after it (a connection a
    sibling was still opening would otherwise be stored after the move closed its connections, and
    kept open for good)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _database_of(url: str) -> str:
    database = make_url(url).database
    if database is None:
        raise ValueError("the shared database URL names no database")
    return database


class Runner:
    """Finds active migrations and runs each; `wake()` after a request makes it look at once."""

    def __init__(self, settings: MigratorSettings, db: PlatformDB, provisioner: Provisioner) -> None:
        self.settings = settings
        self.db = db
        self.provisioner = provisioner
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Requests and cancels committed through this process: a running copy that sees the count
        # change reads its migration row at once (a cancel is noticed without waiting for the next
        # progress save).
        self.nudges = 0

    def wake(self) -> None:
        self.nudges += 1
        self._wake.set()

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="migrator-runner")

    async def stop(self) -> None:
        tasks = [t for t in [self._loop_task, *self._running.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self) -> None:
        try:
            await self.reconcile()
        except Exception:
            log.exception("reconciliation failed; retried at the next start")
        while True:
            try:
                await self.schedule()
                async with self.db.unit_of_work(readonly=True) as uow:
                    active = await placement_repository.runnable_migration_ids(uow.connection)
                for migration_id in active:
                    if migration_id not in self._running:
                        await self._try_start(migration_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("runner poll failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.migrator_poll_interval_seconds)

    async def schedule(self) -> list[uuid.UUID]:
        """Queued automatic moves given the free slots (triggers.to_start), marked in progress in one
        transaction under the scheduler's lock, so replicas never overfill the limit together."""
        now = datetime.now(UTC)
        async with self.db.unit_of_work() as uow:
            queued = await placement_repository.queued_moves(uow.connection)
            if not queued:
                return []
            await placement_repository.lock_scheduler(uow.connection)
            queued = await placement_repository.queued_moves(uow.connection)  # as of the lock
            chosen = triggers.to_start(
                queued,
                running=await placement_repository.running_moves(uow.connection),
                limit=self.settings.placement_max_concurrent_moves,
                now=now,
                hours=self.settings.allowed_hours,
            )
            await placement_repository.mark_started(uow.connection, chosen, time.time())
            await uow.commit()
        for migration_id in chosen:
            log.info("queued move started", migration_id=str(migration_id))
        return chosen

    async def _try_start(self, migration_id: uuid.UUID) -> None:
        lock = await asyncpg.connect(
            libpq_url(self.settings.platform_database_url),
            server_settings={"application_name": "migrator:runner"},
        )
        try:
            taken = await lock.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended('migrator:' || $1, 0))", str(migration_id)
            )
        except BaseException:
            await lock.close()
            raise
        if not taken:
            await lock.close()
            return
        move = Move(self, migration_id)

        async def run() -> None:
            try:
                await move.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("migration run ended with an error", migration_id=str(migration_id))
            finally:
                await move.close_connections()
                self._running.pop(migration_id, None)
                with contextlib.suppress(Exception):
                    await lock.close()

        self._running[migration_id] = asyncio.create_task(run(), name=f"migration-{migration_id}")

    # ------------------------------------------------------------ reconciliation

    async def reconcile(self) -> None:
        """On start: drop capture objects and target databases no active migration owns. Active
        migrations are resumed by the loop (and a half-done cutover finished or undone there)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            active = set(await repository.active_migration_ids(uow.connection))
        shared = _database_of(self.settings.shared_database_url)
        databases = [shared, *await self.provisioner.dedicated_databases()]
        for database in databases:
            owner_url = libpq_url(with_database(self.settings.owner_database_url, database))
            try:
                connection = await moves._connect(owner_url)
            except Exception:
                log.warning("reconcile: cannot open database", database=database)
                continue
            try:
                orphans = await moves.orphaned_objects(connection)
            finally:
                await connection.close()
            for migration_id in orphans - active:
                log.warning(
                    "reconcile: dropping orphaned capture objects",
                    migration_id=str(migration_id),
                    database=database,
                )
                await moves.drop_capture(owner_url, ObjectNames(migration_id))
        await self._drop_orphaned_targets(active)

    async def _drop_orphaned_targets(self, active: set[uuid.UUID]) -> None:
        """A dedicated database made for a move that failed or was cancelled, where the directory
        does not point: dropped (with its role)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            rows = (
                await uow.connection.execute(
                    repository.ended_to_dedicated_without_placement_query(),
                )
            ).all()
        existing = set(await self.provisioner.dedicated_databases())
        for row in rows:
            if row.id in active:
                continue
            database = dedicated_database_name(row.tenant_id)
            if database in existing:
                log.warning("reconcile: dropping orphaned target database", database=database)
                await self.provisioner.drop(row.tenant_id)
                existing.discard(database)


ConnectionRole = Literal["source_reader", "target_reader", "target_writer", "source_counter"]


def _count_totals(tables: dict[str, Any], totals: dict[str, int]) -> list[str]:
    """The copy's tables with their counted rows; a table found empty and not begun is done (a row
    written to it from now on is in the capture, installed before the count). Returns those."""
    empty = []
    for table, total in totals.items():
        state = tables[table]
        state["total"] = total
        if total == 0 and state["last_id"] is None and not state["done"]:
            state["done"] = True
            empty.append(table)
    return empty


class EarlyVerify:
    """Each chunk of the copy compared with what the copy sent as soon as it is copied, while the
    copy goes on: the target's rows of the chunk's key range are read back as binary COPY and their
    digest compared with the digest of the stream the copy read from the source (moves.chunk_digest),
    so the source is read once. The chunks queue and are compared one at a time, in order; what is
    still queued when the copy ends is shared with a second worker on the copy's idle writer. A table
    counts as verified only if this process compared every chunk of it from its first and found
    each equal; anything else (a resumed table, a difference, an error) leaves it to the full
    verification. A change to the source after a chunk's copy is in the capture, and the catch-up
    that applies it puts its key in `unverified`, checked inside the freeze."""

    def __init__(self, move: Move) -> None:
        self._move = move
        self._queue: asyncio.Queue[tuple[str, uuid.UUID, uuid.UUID, bytes] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._eligible: set[str] = set()
        self._failed: set[str] = set()
        self._empty: set[str] = set()
        self._chunks = 0

    def begin(self, table: str, state: dict[str, Any]) -> None:
        if state["last_id"] is None and not state["done"]:
            self._eligible.add(table)

    def empty(self, tables: list[str]) -> None:
        """Tables this process counted empty on the source after the capture began, before copying
        anything to them: equal to the target's, which the provisioning cleared and only the
        catch-up writes (so whatever is applied to them is verified again by key)."""
        self._empty.update(tables)

    def compare(self, table: str, after: uuid.UUID, upper: uuid.UUID, digest: bytes) -> None:
        """Queues the comparison of a chunk just copied; the copy goes on without waiting for it."""
        if table not in self._eligible or table in self._failed:
            return
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._work("target_reader")))
        self._queue.put_nowait((table, after, upper, digest))

    async def _work(self, role: ConnectionRole) -> None:
        while (chunk := await self._queue.get()) is not None:
            table, after, upper, digest = chunk
            if table not in self._failed:
                await self._compare(role, table, after, upper, digest)

    async def _compare(
        self, role: ConnectionRole, table: str, after: uuid.UUID, upper: uuid.UUID, digest: bytes
    ) -> None:
        move = self._move
        target = None
        try:
            target = await move._connection(role)
            found = await moves.chunk_digest(target, move.target, table, after, upper)
        except Exception as error:
            move.log.warning("copy: chunk not compared", table=table, error=repr(error)[:300])
            self._failed.add(table)
            if target is not None:
                move._forget_broken(target)
            return
        self._chunks += 1
        if found != digest:
            # Not expected (nothing but the copy writes the target's range): the table is verified
            # in full after the catch-up instead (how often: this stage of the mismatch counter).
            metrics.VERIFY_MISMATCHES.labels("copy").inc()
            self._failed.add(table)

    async def finish(self) -> tuple[set[str], int]:
        """(the tables verified chunk by chunk, the chunks compared), once every queued comparison
        is done."""
        if self._tasks:
            if not self._queue.empty():
                self._tasks.append(asyncio.create_task(self._work("target_writer")))
            for _ in self._tasks:
                self._queue.put_nowait(None)
            tasks, self._tasks = self._tasks, []
            await asyncio.gather(*tasks)
        return (self._eligible - self._failed) | self._empty, self._chunks

    async def stop(self) -> None:
        """The copy ended otherwise (a cancel, an error): the comparisons queued and in flight are
        abandoned, and a connection left inside a transaction is not used again."""
        if self._tasks:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(BaseException):
                    await task
            self._tasks = []
            for role in ("target_reader", "target_writer"):
                connection = self._move._connections.get(role)
                if connection is not None:
                    self._move._forget_broken(connection)


class Move:
    """One migration's run through its phases."""

    def __init__(self, runner: Runner, migration_id: uuid.UUID) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.db = runner.db
        self.id = migration_id
        self.names = ObjectNames(migration_id)
        self.log = log.bind(migration_id=str(migration_id))
        # Keys applied since the full verification: verified again inside the freeze.
        self.unverified: set[tuple[str, uuid.UUID]] = set()
        self.verified_here = False  # `unverified` is complete only after a verification in this run
        # Tables whose every chunk this process compared with what the copy sent right after
        # copying it, or counted empty (EarlyVerify): the full verification skips them, and keeps
        # what was applied to them since in `unverified`.
        self.early_verified: set[str] = set()
        self.early_chunks = 0
        self.row: Row[Any] | None = None
        self.nudges_seen = 0  # the runner's nudges when the row was last read or written
        self._connections: dict[str, asyncpg.Connection] = {}
        self._preparing: asyncio.Future[Any] | None = None
        self.source: Endpoint
        self.target: Endpoint
        self.direction: Direction

    # ------------------------------------------------------------ connections

    async def _connection(self, role: ConnectionRole) -> asyncpg.Connection:
        """The move's own connections, opened once (a connection costs a TCP + SCRAM round trip set,
        which inside the freeze would be most of it) and opened again only after one broke."""
        connection = self._connections.get(role)
        if connection is None or connection.is_closed():
            if role in ("source_reader", "source_counter"):
                connection = await self.source.connect_reader()
            elif role == "target_reader":
                connection = await self.target.connect_reader()
            else:
                connection = await self.target.connect_writer()
            self._connections[role] = connection
        return connection

    async def _platform_connection(self) -> asyncpg.Connection:
        """The cutover's platform connection (migrator_service), opened before the freeze."""
        connection = self._connections.get("platform")
        if connection is None or connection.is_closed():
            connection = await asyncpg.connect(
                libpq_url(self.settings.platform_database_url),
                server_settings={"application_name": "migrator:cutover"},
                timeout=5,
            )
            await connection.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            self._connections["platform"] = connection
        return connection

    def _prepare_cutover(self) -> asyncio.Future[Any]:
        """The cutover's platform and hold connections, opening from the end of the copy on, while
        the last comparisons, the catch-up and the verification run (once: a connection opened
        twice would be left behind)."""
        preparing = self._preparing
        if preparing is None or (preparing.done() and (preparing.cancelled() or preparing.exception())):
            self._preparing = asyncio.ensure_future(
                _together(self._platform_connection(), self._hold_connection())
            )
        assert self._preparing is not None
        return self._preparing

    async def _hold_connection(self) -> asyncpg.Connection:
        """The connection the next `Cutover.hold` runs on (it closes it when it ends)."""
        connection = self._connections.get("hold")
        if connection is None or connection.is_closed():
            connection = await Cutover.connect(
                self.source.owner_url, wait_seconds=self.settings.migrator_drain_timeout_seconds
            )
            self._connections["hold"] = connection
        return connection

    def _forget_broken(self, connection: asyncpg.Connection) -> None:
        """After a step: a connection left inside a transaction or closed is not used again."""
        if connection.is_closed() or connection.is_in_transaction():
            for role, held in list(self._connections.items()):
                if held is connection:
                    del self._connections[role]
            if not connection.is_closed():
                connection.terminate()

    async def close_connections(self) -> None:
        if self._preparing is not None:
            # Connections still opening (their connects are bounded by timeouts) are closed too.
            with contextlib.suppress(BaseException):
                await self._preparing
            self._preparing = None
        for connection in self._connections.values():
            with contextlib.suppress(Exception):
                await connection.close(timeout=5)
        self._connections.clear()

    # ------------------------------------------------------------ bookkeeping

    async def load(self) -> Row[Any]:
        nudges = self.runner.nudges
        async with self.db.unit_of_work(readonly=True) as uow:
            row = await repository.get_migration(uow.connection, self.id)
        if row is None:
            raise LookupError(f"migration {self.id} vanished")
        self.row, self.nudges_seen = row, nudges
        return row

    @property
    def nudged(self) -> bool:
        """A request or cancel reached this process since the row was last read (or written)."""
        return self.runner.nudges != self.nudges_seen

    async def save(
        self,
        values: dict[str, Any] | None = None,
        *,
        progress: dict[str, Any] | None = None,
        event: str | None = None,
    ) -> Row[Any]:
        nudges = self.runner.nudges
        async with self.db.unit_of_work() as uow:
            row = await repository.update_migration(uow.connection, self.id, values or {}, progress=progress)
            if event is not None:
                await record(uow.connection, topics.MIGRATIONS, domain.migration_event(event, row))
            await uow.commit()
        self.row, self.nudges_seen = row, nudges
        return row

    @property
    def progress(self) -> dict[str, Any]:
        assert self.row is not None
        value: dict[str, Any] = self.row.progress
        return value

    async def advance(self, phase: str, progress: dict[str, Any] | None = None) -> None:
        started = self.progress.get("phase_started_at")
        if started is not None:
            previous = self.row.phase if self.row is not None else "?"
            metrics.PHASE_SECONDS.labels(previous).observe(max(0.0, time.time() - float(started)))
        await self.save(
            {"phase": phase},
            progress={**(progress or {}), "phase_started_at": time.time()},
            event="migration.phase_changed",
        )
        self.log.info("phase", phase=phase)

    def endpoints(self, row: Row[Any]) -> None:
        self.direction = domain.DIRECTIONS[row.migration_type]
        shared_db = _database_of(self.settings.shared_database_url)
        if self.direction == "to_dedicated":
            dedicated_db = dedicated_database_name(row.tenant_id)
            source_db, target_db = shared_db, dedicated_db
        else:
            dedicated_db = row.from_state.get("database_name") or dedicated_database_name(row.tenant_id)
            source_db, target_db = dedicated_db, shared_db
        self.source = self._endpoint(domain.source_variant(self.direction), source_db, row.tenant_id)
        self.target = self._endpoint(domain.target_variant(self.direction), target_db, row.tenant_id)

    def _endpoint(self, variant: domain.Variant, database: str, tenant_id: uuid.UUID) -> Endpoint:
        return Endpoint(
            variant=variant,
            database=database,
            owner_url=self.runner.provisioner.owner_url(database),
            admin_url=self.runner.provisioner.admin_url(database),
            tenant_id=tenant_id,
        )

    # ------------------------------------------------------------ the run

    async def run(self) -> None:
        row = await self.load()
        self.endpoints(row)
        if row.status == "pending":
            row = await self.save(
                {"status": "in_progress"}, progress={"phase_started_at": time.time()}, event=None
            )
        phases: dict[str, Callable[[], Awaitable[None]]] = {
            "provision": self.provision,
            "capture": self.capture,
            "copy": self.copy,
            "catch_up": self.catch_up,
            "verify": self.verify,
            "cutover": self.cutover,
            "cleanup": self.cleanup,
        }
        transient_failures = 0
        advanced = False
        while True:
            # A phase that moved the migration on left its row as that write returned it (with any
            # cancel mark written before it): read again only otherwise.
            if not advanced or self.row is None:
                row = await self.load()
            else:
                row = self.row
            if row.status not in domain.ACTIVE_STATUSES:
                return
            if row.phase == "done":
                return
            if row.progress.get("cancel_requested") and row.phase in domain.CANCELLABLE_PHASES:
                await self.roll_back("cancelled", None)
                return
            metrics.ACTIVE.labels(row.phase).inc()
            advanced = False
            try:
                await phases[row.phase]()
                transient_failures = 0
                advanced = self.row is not None and self.row.phase != row.phase
            except asyncio.CancelledError:
                raise
            except Cancelled:
                await self.roll_back("cancelled", None)
                return
            except Exception as error:
                if _transient(error) and transient_failures < MAX_TRANSIENT_RETRIES:
                    transient_failures += 1
                    self.log.warning(
                        "transient failure, retrying the phase", phase=row.phase, error=str(error)
                    )
                    await asyncio.sleep(TRANSIENT_RETRY_SECONDS)
                    continue
                if row.phase in (*domain.CANCELLABLE_PHASES, "cutover"):
                    self.log.exception("migration failed; rolling back", phase=row.phase)
                    await self.roll_back("failed", f"{row.phase}: {type(error).__name__}: {error}")
                    return
                # After the flip the move can only be finished: keep trying.
                self.log.exception("cleanup failed; retried", phase=row.phase)
                await asyncio.sleep(TRANSIENT_RETRY_SECONDS)
            finally:
                metrics.ACTIVE.labels(row.phase).dec()

    # ------------------------------------------------------------ phases

    async def provision(self) -> None:
        crash_point("provision")
        pending = self.names.pending_fence
        if self.direction == "to_dedicated":
            await self.runner.provisioner.provision(self.target.tenant_id)
        # The target refuses the tenant's writes until the cutover opens it (tenantdb_enter and the
        # split-brain guard both read this fence); a fence already there (an earlier move) stays.
        await moves.set_fence(self.target.owner_url, self.target.tenant_id, epoch=0, moved_to=pending)
        writer = await self.target.connect_writer()
        try:
            await moves.clear_tenant(writer, self.target)
        finally:
            await writer.close()
        crash_point("provision", "done")
        await self.advance("capture")

    async def capture(self) -> None:
        crash_point("capture")
        # The copy's connections are opened meanwhile (a TCP and SCRAM exchange each).
        await _together(
            moves.install_capture(self.source, self.names),
            *(
                self._connection(role)
                for role in ("source_reader", "target_writer", "source_counter", "target_reader")
            ),
        )
        crash_point("capture", "done")
        await self.advance("copy", {"captured_at": datetime.now(UTC).isoformat()})

    async def copy(self) -> None:
        reader = await self._connection("source_reader")
        writer = await self._connection("target_writer")
        tables: dict[str, Any] = dict(self.progress.get("tables") or {})
        extra: dict[str, Any] = {}
        counting: asyncio.Task[dict[str, int]] | None = None
        if not tables:
            # The tables' rows are counted (for the progress shown) while the copy begins.
            counter = await self._connection("source_counter")
            counting = asyncio.create_task(moves.count_rows(counter, self.source, TENANT_TABLES))
            tables = {t: {"rows": 0, "total": None, "last_id": None, "done": False} for t in TENANT_TABLES}
            extra["copy_started_at"] = time.time()
        early = EarlyVerify(self)
        try:
            started = time.monotonic()
            saved_at = started
            copied = 0
            for table in TENANT_TABLES:
                if counting is not None and counting.done():
                    early.empty(_count_totals(tables, counting.result()))
                    counting = None
                state = dict(tables[table])
                early.begin(table, state)
                while not state["done"]:
                    after = uuid.UUID(state["last_id"]) if state["last_id"] else ZERO_ID
                    upper, written, full, digest = await moves.copy_chunk(
                        reader,
                        writer,
                        self.source,
                        self.target,
                        table,
                        after,
                        self.settings.migrator_copy_chunk_rows,
                    )
                    crash_point("copy", "chunk")
                    if upper is None:
                        state["done"] = True
                    else:
                        early.compare(table, after, upper, digest)
                        state["last_id"] = str(upper)
                        state["done"] = not full
                        state["rows"] += written
                        copied += written
                        metrics.ROWS_COPIED.labels("copy").inc(written)
                    tables[table] = state
                    now = time.monotonic()
                    if now - saved_at >= self.settings.migrator_copy_progress_seconds or self.nudged:
                        saved_at = now
                        elapsed = max(now - started, 1e-6)
                        saved = await self.save(
                            progress={"tables": tables, "rows_per_second": round(copied / elapsed), **extra}
                        )
                        extra = {}
                        if saved.progress.get("cancel_requested"):
                            raise Cancelled()
            if counting is not None:
                early.empty(_count_totals(tables, await counting))
                counting = None
            self._prepare_cutover()
            self.early_verified, self.early_chunks = await early.finish()
        finally:
            if counting is not None:
                counting.cancel()
                with contextlib.suppress(BaseException):
                    await counting
                self._forget_broken(counter)
            await early.stop()
            self._forget_broken(reader)
            self._forget_broken(writer)
        elapsed = max(time.monotonic() - started, 1e-6)
        await self.advance(
            "catch_up",
            {
                "tables": tables,
                "rows_per_second": round(copied / elapsed),
                "copy_finished_at": time.time(),
                **extra,
            },
        )

    async def _catch_up_until(self, target_lag: int, *, deadline: float | None = None) -> int:
        """Apply captured changes until at most `target_lag` wait; returns the lag left."""
        reader = await self._connection("source_reader")
        writer = await self._connection("target_writer")
        try:
            while True:
                applied = await moves.catch_up_batch(
                    reader,
                    writer,
                    self.source,
                    self.target,
                    self.names,
                    self.settings.migrator_catch_up_batch_rows,
                )
                self.unverified |= applied.keys
                metrics.ROWS_COPIED.labels("catch_up").inc(applied.rows)
                remaining = await moves.lag(reader, self.names)
                metrics.CATCH_UP_LAG.set(remaining)
                if applied.changes:
                    await self.save(progress={"lag": remaining})
                if remaining <= target_lag:
                    return remaining
                if deadline is not None and time.monotonic() > deadline:
                    return remaining
        finally:
            self._forget_broken(reader)
            self._forget_broken(writer)

    async def catch_up(self) -> None:
        crash_point("catch_up")
        await self._catch_up_until(self.settings.migrator_catch_up_target_lag)
        await self.advance("verify")

    async def verify(self) -> None:
        crash_point("verify")
        summary, _ = await _together(self._verify_all(), self._prepare_cutover())
        # Into the cutover only if no cancel was asked for meanwhile (the cancel takes the same row).
        async with self.db.unit_of_work() as uow:
            current = await repository.get_migration(uow.connection, self.id, for_update=True)
            assert current is not None
            if current.progress.get("cancel_requested"):
                await uow.commit()
                return  # the loop sees the mark and rolls back
            row = await repository.update_migration(
                uow.connection,
                self.id,
                {"phase": "cutover"},
                progress={"verify": summary, "phase_started_at": time.time()},
            )
            await record(
                uow.connection, topics.MIGRATIONS, domain.migration_event("migration.phase_changed", row)
            )
            await uow.commit()
        self.row = row

    async def _verify_all(self) -> dict[str, Any]:
        """Every table compared by chunks after a catch-up; from then on `unverified` holds the keys
        to compare again inside the freeze. Returns the summary recorded in `progress`."""
        await self._catch_up_until(self.settings.migrator_catch_up_target_lag)
        # From here on, what the catch-up applies and what a pass finds pending is verified again,
        # by key, inside the freeze; for a table compared during the copy, everything applied to it
        # since its comparison too (it is not compared again here).
        self.unverified = {(table, key) for table, key in self.unverified if table in self.early_verified}
        source_conn = await self._connection("source_reader")
        target_conn = await self._connection("target_reader")
        total_chunks = self.early_chunks
        total_mismatches = 0
        try:
            pending: dict[str, list[tuple[uuid.UUID, uuid.UUID | None]] | None] = dict.fromkeys(
                table for table in TENANT_TABLES if table not in self.early_verified
            )
            for verify_pass in range(VERIFY_PASSES):
                mismatched: dict[str, list[tuple[uuid.UUID, uuid.UUID | None]] | None] = {}
                for table, ranges in pending.items():
                    chunks, mismatches = await moves.verify_table(
                        source_conn,
                        target_conn,
                        self.source,
                        self.target,
                        table,
                        self.settings.migrator_verify_chunk_rows,
                        ranges,
                    )
                    total_chunks += chunks
                    unexplained: list[tuple[uuid.UUID, uuid.UUID | None]] = []
                    for mismatch in mismatches:
                        left = await moves.range_key_sums(
                            source_conn, self.source, table, mismatch.after, mismatch.upper
                        )
                        right = await moves.range_key_sums(
                            target_conn, self.target, table, mismatch.after, mismatch.upper
                        )
                        differing = {k for k in left.keys() | right.keys() if left.get(k) != right.get(k)}
                        # A key written since the last catch-up has a captured change waiting (the
                        # catch-up, never concurrent with this, deletes only what it applied): it is
                        # applied later and verified again, by key, inside the freeze. Anything else
                        # is a real difference: re-copied, and its range compared again.
                        waiting = await moves.pending_keys(source_conn, self.names, table, differing)
                        self.unverified |= {(table, key) for key in waiting}
                        if differing - waiting:
                            await moves.enqueue_keys(source_conn, self.names, table, differing - waiting)
                            unexplained.append((mismatch.after, mismatch.upper))
                    if unexplained:
                        mismatched[table] = unexplained
                        total_mismatches += len(unexplained)
                        metrics.VERIFY_MISMATCHES.labels("full").inc(len(unexplained))
                crash_point("verify", "pass")
                if not mismatched:
                    break
                self.log.info(
                    "verify: re-copying mismatched ranges",
                    ranges=sum(len(r or []) for r in mismatched.values()),
                    verify_pass=verify_pass,
                )
                await self._catch_up_until(0)
                pending = mismatched
            else:
                raise RuntimeError(f"verification found differences after {VERIFY_PASSES} passes")
        finally:
            self._forget_broken(source_conn)
            self._forget_broken(target_conn)
        self.verified_here = True
        return {"chunks": total_chunks, "mismatched_chunks": total_mismatches, "equal": True}

    async def cutover(self) -> None:
        if not self.verified_here:
            # Resumed in the cutover by another process (or after a restart): the keys changed since
            # the full verification lived in the one before. Verify everything again, outside the
            # freeze, so the freeze's check by key misses nothing.
            self.log.info("cutover resumed without this process's verification: verifying again")
            # A fence this move left on the source (killed inside the freeze) is lifted first: the
            # tenant is served meanwhile, and its writes are captured as before.
            fence = await moves.fence_of(self.source.owner_url, self.source.tenant_id)
            if fence is not None and fence["moved_to"] == self.target.database:
                await moves.drop_fence(
                    self.source.owner_url, self.source.tenant_id, moved_to=self.target.database
                )
            summary = await self._verify_all()
            self.row = await self.save(progress={"verify": summary, "reverified_at": time.time()})
        attempts = 0
        while True:
            crash_point("cutover")
            if attempts:
                await asyncio.sleep(self.settings.migrator_cutover_retry_seconds)
            # Outside the freeze: bring the lag down first, so the freeze applies only a little.
            await self._catch_up_until(self.settings.migrator_catch_up_target_lag)
            try:
                freeze = await self._cutover_once()
            except (CutoverLockTimeout, CutoverAborted) as error:
                reason = error.reason if isinstance(error, CutoverAborted) else "drain_timeout"
                attempts += 1
                metrics.CUTOVER_ABORTS.labels(reason).inc()
                row = await self.save(
                    {"cutover_attempts": (self.row.cutover_attempts if self.row else 0) + 1},
                    progress={"last_cutover_abort": f"{reason}: {error}"},
                )
                self.log.warning("cutover released without a flip; retrying", reason=reason, attempt=attempts)
                if row.cutover_attempts >= self.settings.migrator_max_cutover_attempts:
                    raise RuntimeError(
                        f"cutover aborted {row.cutover_attempts} times; last: {error}"
                    ) from error
                continue
            metrics.FREEZE_SECONDS.observe(freeze)
            crash_point("cutover", "flipped")
            return

    async def _cutover_once(self) -> float:
        """Hold, drain, verify what changed, deliver the source's events, fence, flip, release.
        Returns how long the tenant's writes were held."""
        tenant_id = self.source.tenant_id
        # Everything the freeze uses is connected before it begins.
        for role in ("source_reader", "target_reader", "target_writer"):
            await self._connection(role)
        platform = await self._platform_connection()
        # The directory row is locked before the hold, in the transaction that will flip it (its
        # epoch read with it): a transaction that holds the row (usage's batch updating the tenant's
        # counters, tenancy updating the tenant) is waited for while the tenant is still served. The
        # flip inside the freeze then waits for nobody; whoever wants the row waits for the freeze.
        flipping = platform.transaction()
        await flipping.start()
        try:
            epoch = await lock_directory_row(platform, tenant_id) + 1
            return await self._hold_and_flip(flipping, epoch)
        except BaseException:
            if not platform.is_closed() and platform.is_in_transaction():
                with contextlib.suppress(Exception):
                    await flipping.rollback()
            self._forget_broken(platform)
            raise

    async def _hold_and_flip(self, flipping: asyncpg.transaction.Transaction, epoch: int) -> float:
        """The freeze: `flipping` (the platform transaction holding the directory row) commits the
        flip inside it."""
        tenant_id = self.source.tenant_id
        drain = self.settings.migrator_drain_timeout_seconds
        hold_connection = await self._hold_connection()
        del self._connections["hold"]  # the hold's own: it closes it, and the next attempt opens one
        async with Cutover.hold(
            self.source.owner_url, tenant_id, wait_seconds=drain, connection=hold_connection
        ) as held:
            frozen_at = time.monotonic()
            crash_point("cutover", "held")
            # Writers are held: what the change table holds now is all there will be.
            left = await self._catch_up_until(0, deadline=frozen_at + drain)
            if left:
                raise CutoverAborted("catch_up", f"{left} changes left after {drain} s")
            source_conn = await self._connection("source_reader")
            target_conn = await self._connection("target_reader")
            try:
                differing = await moves.verify_keys(
                    source_conn, target_conn, self.source, self.target, self.unverified
                )
                if differing:
                    metrics.VERIFY_MISMATCHES.labels("cutover").inc(len(differing))
                    for table in {table for table, _ in differing}:
                        await moves.enqueue_keys(
                            source_conn, self.names, table, [key for t, key in differing if t == table]
                        )
                    raise CutoverAborted("verify", f"{len(differing)} changed rows differ")
                # The tenant's events from the source go out before any from the target.
                outbox_deadline = time.monotonic() + self.settings.migrator_outbox_drain_seconds
                while unsent := await moves.unsent_outbox_rows(source_conn, tenant_id):
                    if time.monotonic() > outbox_deadline:
                        raise CutoverAborted("outbox", f"{unsent} events not yet published from the source")
                    await asyncio.sleep(0.01)
            finally:
                self._forget_broken(source_conn)
                self._forget_broken(target_conn)
            crash_point("cutover", "verified")
            await held.fence(epoch=epoch, moved_to=self.target.database)
            crash_point("cutover", "fenced")
            try:
                # tenantdb.fencing.unfence, on the move's open owner connection to the target.
                target_owner = await self._connection("target_reader")
                async with target_owner.transaction():
                    await target_owner.execute("SET LOCAL lock_timeout = '5s'")
                    await target_owner.execute("DELETE FROM tenant_fences WHERE tenant_id = $1", tenant_id)
                crash_point("cutover", "unfenced")
                freeze_ms = round((time.monotonic() - frozen_at) * 1000, 1)
                await self._flip(freeze_ms)
                await flipping.commit()
            except BaseException:
                # Not flipped: the source serves on, the target stays closed.
                with contextlib.suppress(Exception):
                    await held.connection.execute("DELETE FROM tenant_fences WHERE tenant_id = $1", tenant_id)
                with contextlib.suppress(Exception):
                    await moves.set_fence(
                        self.target.owner_url, tenant_id, epoch=0, moved_to=self.names.pending_fence
                    )
                raise
            freeze = time.monotonic() - frozen_at
        self.log.info("cutover done", freeze_ms=round(freeze * 1000, 1))
        return freeze

    async def _flip(self, freeze_ms: float) -> None:
        """One platform transaction: the directory points at the target (epoch + 1), the
        tenant.placement_changed event, the migration into its cleanup phase."""
        tenant_id = self.target.tenant_id
        tenant_type = self.target.variant
        database_name = self.target.database if tenant_type == "dedicated" else None
        platform = await self._platform_connection()
        try:
            async with platform.transaction():
                epoch = await flip_placement(
                    platform, tenant_id, tenant_type=tenant_type, database_name=database_name
                )
                await record_on(
                    platform,
                    topics.TENANTS,
                    domain.placement_changed_event(tenant_id, tenant_type, database_name, epoch),
                )
                progress = {
                    "freeze_ms": freeze_ms,
                    "flipped_at": time.time(),
                    "placement_epoch": epoch,
                    "phase_started_at": time.time(),
                }
                row = await platform.fetchrow(
                    "UPDATE tenant_migrations SET phase = 'cleanup', updated_at = now(), "
                    "progress = progress || $2::jsonb, "
                    "to_state = to_state || $3::jsonb WHERE id = $1 RETURNING *",
                    self.id,
                    progress,
                    {"tenant_type": tenant_type, "database_name": database_name, "placement_epoch": epoch},
                )
                assert row is not None
                await record_on(
                    platform, topics.MIGRATIONS, domain.migration_event("migration.phase_changed", row)
                )
        except BaseException:
            self._forget_broken(platform)
            raise

    async def cleanup(self) -> None:
        crash_point("cleanup")
        # The copy's and the cutover's connections are done with: closed before the wait (the
        # directory's TTL and a margin), or every move waiting for its cleanup held five of them,
        # and a queue of automatic moves (a slot frees at the flip) ran the server out of slots.
        await self.close_connections()
        await moves.drop_capture(self.source.owner_url, self.names)
        progress = self.progress
        due = float(progress.get("flipped_at") or 0) + self.settings.migrator_cleanup_delay_seconds
        while not progress.get("cleanup_now") and time.time() < due:
            await asyncio.sleep(min(1.0, max(0.0, due - time.time())))
            progress = (await self.load()).progress
        crash_point("cleanup", "deleting")
        if self.source.variant == "dedicated":
            await self.runner.provisioner.drop(self.source.tenant_id)
        else:
            writer = await self.source.connect_writer()
            try:
                after: dict[str, uuid.UUID] = {}
                while await moves.delete_tenant_batch(writer, self.source, 1000, after):
                    pass
            finally:
                await writer.close()
        await self.save(
            {"status": "completed", "phase": "done", "completed_at": func.now()},
            progress={"source_deleted_at": time.time()},
            event="migration.completed",
        )
        metrics.MIGRATIONS.labels("completed").inc()
        self.log.info("migration completed")

    # ------------------------------------------------------------ rollback

    async def roll_back(self, status: str, error_message: str | None) -> None:
        """Before the flip: the tenant stays where it is, everything the move made is removed."""
        async with self.db.unit_of_work(readonly=True) as uow:
            tenant = await repository.get_tenant(uow.connection, self.source.tenant_id)
        if tenant is not None and tenant.tenant_type == self.target.variant:
            # Flipped after all (a crash between the flip's commit and this): finish instead.
            raise RuntimeError("the directory already points at the target; not rolling back")
        await moves.drop_capture(self.source.owner_url, self.names)
        # A fence of this move left on the source (a crash inside the cutover) is lifted.
        fence = await moves.fence_of(self.source.owner_url, self.source.tenant_id)
        if fence is not None and fence["moved_to"] == self.target.database:
            await moves.drop_fence(
                self.source.owner_url, self.source.tenant_id, moved_to=self.target.database
            )
        if self.direction == "to_dedicated":
            await self.runner.provisioner.drop(self.target.tenant_id)
        else:
            writer = await self.target.connect_writer()
            try:
                await moves.clear_tenant(writer, self.target)
            finally:
                await writer.close()
        event = "migration.cancelled" if status == "cancelled" else "migration.failed"
        async with self.db.unit_of_work() as uow:
            row = await repository.update_migration(
                uow.connection,
                self.id,
                {"status": status, "error_message": error_message, "completed_at": func.now()},
                progress={"rolled_back_at": time.time()},
            )
            await record(uow.connection, topics.MIGRATIONS, domain.migration_event(event, row))
            if status == "failed" and row.trigger is not None:
                # An automatic move's retry (or, after the last attempt, an alert), with the failure.
                await placement_usecases.queue_retry(uow.connection, row, self.settings, datetime.now(UTC))
            await uow.commit()
        self.row = row
        metrics.MIGRATIONS.labels(status).inc()
        self.log.warning("migration rolled back", status=status, error=error_message)
