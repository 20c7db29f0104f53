"""The outbox relay: publishes committed events to Kafka, at least once, in order per tenant.

The protocol (leases per partition, lease-checked settling, per-tenant commit order) is described in
libs/events/README.md; the SQL is tenantschema.outbox_ddl. In short, one relay per process drains:

- its *polled* sources (the shared database for tenant services, the platform one for tenancy), again
  and again while rows come (`poll_min` after each drain), backing off to `idle_poll` when idle (what
  the first event another process commits after a quiet spell may wait: an idle claim changes no lease);
- a dedicated database when this process committed there (`notify(name)`), and once more shortly after
  when that found nothing (another relay held the partition at that moment);
- leftovers: every `sweep_interval`, up to `leftover_batch` dedicated databases that no relay swept
  within `leftover_interval` seconds (handed out by the platform database, so N relays share the
  round), which picks up what a crashed process, another writer or a moved tenant left behind.

Draining one source is: claim (the leases of the source's partitions this relay may take, and their
ready rows), send with an idempotent `acks=all` producer keyed by tenant id, settle (published; back to
pending with backoff after a transient error, never dropped; `failed` with the reason for an event
Kafka can never accept, which then holds nothing back), and again until a claim comes back short.
Each source fails alone: it is backed off (exponentially, capped) while the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger("events.relay")

Kind = Literal["platform", "shared", "dedicated"]
KINDS: tuple[Kind, ...] = ("platform", "shared", "dedicated")

SENDS = Counter("outbox_sends_total", "Outbox events handed to Kafka, by outcome", ["outcome"])
_PUBLISHED, _RETRIED, _FAILED = (SENDS.labels(o) for o in ("published", "retried", "failed"))
BACKLOG = Gauge("outbox_backlog_events", "Outbox events not yet published (last measured)", ["kind"])
OLDEST = Gauge(
    "outbox_oldest_unsent_age_seconds", "Age of the oldest unpublished outbox event (last measured)", ["kind"]
)
FAILED_EVENTS = Gauge(
    "outbox_failed_events", "Outbox events settled failed (never sendable), by database kind", ["kind"]
)
SOURCE_FAILURES = Counter("outbox_source_failures_total", "Drains of a source that failed", ["kind"])
LEASE_LOST = Counter("outbox_lease_lost_total", "Claimed events this relay could no longer settle")

_CLAIM = text(
    "SELECT seq, event_id, tenant_id, topic, payload, lease_token "
    "FROM outbox_claim(:relay, :n, :lease, :release_idle)"
)
_SETTLE = text(
    "SELECT outbox_settle(:relay, CAST(:tokens AS bigint[]), CAST(:published AS bigint[]), "
    "CAST(:retry AS bigint[]), :retry_error, CAST(:failed AS bigint[]), CAST(:failed_errors AS text[]))"
)
_BACKLOG = text("SELECT unsent, oldest_unsent, failed FROM outbox_backlog()")
_PRUNE = text("SELECT outbox_prune(CAST(:keep AS interval))")
_RELEASE = text("SELECT outbox_release(:relay)")
RELEASE_SECONDS = 2.0  # at stop: leases not given back by then lapse on their own (the lease time)
_SWEEP_DUE = text("SELECT outbox_sweep_due(:n, :interval) AS database_name")

# Errors about the message itself: sending it again can never succeed. Everything else (timeouts, a
# broker away, leadership moving, authorization being fixed) is retried with backoff, for as long as it
# takes: aiokafka marks some of those not `retriable` (KafkaTimeoutError), so that flag alone is no
# reason to give an event up.
POISON_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)


def is_poison(error: BaseException) -> bool:
    return isinstance(error, POISON_ERRORS) and not getattr(error, "retriable", False)


@dataclass(frozen=True)
class Source:
    name: str  # "platform", "shared", or a dedicated database's name
    kind: Kind
    engine: AsyncEngine


DedicatedResolver = Callable[[str], Source]  # a dedicated database's name -> its source (engine LRU)
LeftoverLister = Callable[[int, float], Awaitable[Sequence[str]]]  # (n, min interval) -> database names


def relay_id(service: str) -> str:
    """Unique per process life: a restarted process is a new relay (a stopped one gives its leases
    back; a killed one's lapse)."""
    return f"{service}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _State:
    due: float = 0.0  # when to drain next (monotonic); inf: not scheduled
    failures: int = 0  # in a row
    retry_at: float = 0.0  # while failing: not before this
    idle_polls: int = 0
    recheck: bool = False  # a notified drain found nothing: look once more shortly after
    measured_at: float = float("-inf")
    pruned_at: float = field(default_factory=time.monotonic)


class OutboxRelay:
    def __init__(
        self,
        bootstrap_servers: str,
        sources: Sequence[Source],
        *,
        relay: str | None = None,
        dedicated: DedicatedResolver | None = None,
        leftovers: LeftoverLister | None = None,
        batch_size: int = 500,
        sweep_interval: float = 1.0,
        poll_min: float = 0.005,
        idle_poll: float = 0.05,
        leftover_batch: int = 4,
        leftover_interval: float = 30.0,
        recheck_delay: float = 0.25,
        lease_seconds: int = 30,
        concurrency: int = 4,
        keep_published: str = "1 day",
        max_request_size: int = 1024 * 1024,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.relay = relay or relay_id("relay")
        self._bootstrap = bootstrap_servers
        self._polled = {source.name: source for source in sources}
        self._dedicated = dedicated
        self._leftovers = leftovers
        self._batch = batch_size
        self._interval = sweep_interval
        self._poll_min = poll_min
        self._idle_poll = idle_poll
        self._leftover_batch = leftover_batch
        self._leftover_interval = leftover_interval
        self._recheck_delay = recheck_delay
        self._lease = lease_seconds
        self._keep = keep_published
        self._max_request_size = max_request_size
        self._closers = list(closers)  # e.g. dispose the engines the relay was given, after it stopped
        # At most this many sources drained at once; with a dedicated engine LRU of at least this size,
        # an engine in use is never evicted (engines.DedicatedEngines skips checked-out ones).
        self._slots = asyncio.Semaphore(concurrency)
        self._producer: AIOKafkaProducer | None = None
        self._producer_broken = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._states: dict[str, _State] = {name: _State() for name in self._polled}
        self._running: dict[str, asyncio.Task[int]] = {}
        self._leftovers_due = 0.0
        self._leftover_failures = 0
        self._listing: asyncio.Task[None] | None = None
        self._backlog: dict[str, tuple[Kind, int, float | None, int, float]] = {}

    # ------------------------------------------------------------------------------------ interface

    def notify(self, source: str | None = None) -> None:
        """Events were just committed in `source` (None: somewhere): drain it now, not at the sweep."""
        now = time.monotonic()
        if source is None:
            for state in self._states.values():
                state.due = min(state.due, now)
            self._leftovers_due = min(self._leftovers_due, now)
        else:
            self._schedule(source, now, recheck=source not in self._polled)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        tasks = [*self._running.values(), *([self._listing] if self._listing is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        await self._stop_producer()
        # Only the polled sources keep leases while idle (a dedicated one's are given back as soon as
        # a claim finds nothing ready): give them back, so no event waits out the lease after a
        # rolling restart.
        await asyncio.gather(*(self._release(source) for source in self._polled.values()))
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()

    async def _release(self, source: Source) -> None:
        try:
            async with asyncio.timeout(RELEASE_SECONDS), source.engine.connect() as connection:
                released = (await connection.execute(_RELEASE, {"relay": self.relay})).scalar_one()
                await connection.commit()
        except Exception as error:  # a database away: the leases lapse by themselves
            log.warning("outbox leases not given back", source=source.name, error=repr(error))
            return
        log.debug("outbox leases given back", source=source.name, leases=released)

    # ---------------------------------------------------------------------------------- scheduling

    async def _run(self) -> None:
        kafka_failures = 0
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._leftovers is not None and now >= self._leftovers_due and self._listing is None:
                # A task of its own: a platform database that hangs must not hold up the drains.
                self._leftovers_due = float("inf")
                self._listing = asyncio.create_task(self._list_leftovers(now), name="outbox-leftovers")
                self._listing.add_done_callback(self._listed)
            due = [
                name for name, state in self._states.items() if state.due <= now and name not in self._running
            ]
            if due:
                try:
                    await self._ensure_producer()
                    kafka_failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # Kafka away: the rows wait in their databases
                    kafka_failures += 1
                    delay = min(5.0, 0.2 * 2**kafka_failures)
                    log.warning(
                        "kafka unavailable; outbox relay waits", retry_in_seconds=delay, error=repr(error)
                    )
                    await asyncio.sleep(delay)
                    continue
                for name in due:
                    self._states[name].due = float("inf")
                    task = asyncio.create_task(self._drain_guarded(name), name=f"outbox-drain:{name}")
                    self._running[name] = task
                    task.add_done_callback(lambda _t: self._wake.set())
            finished = [name for name, task in self._running.items() if task.done()]
            for name in finished:
                self._running.pop(name)
            if self._producer_broken and not self._running:
                await self._stop_producer()  # rebuilt at the next drain: aiokafka may be wedged
            next_due = min(
                [state.due for name, state in self._states.items() if name not in self._running]
                + ([self._leftovers_due] if self._leftovers is not None else [])
                + [now + self._interval]
            )
            timeout = max(0.0, next_due - time.monotonic())
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    def _listed(self, task: asyncio.Task[None]) -> None:
        self._listing = None
        if self._leftovers_due == float("inf"):  # it failed unexpectedly: try again at the next sweep
            self._leftovers_due = time.monotonic() + self._interval
        self._wake.set()

    async def _list_leftovers(self, now: float) -> None:
        assert self._leftovers is not None
        try:
            async with asyncio.timeout(self._lease):
                names = await self._leftovers(self._leftover_batch, self._leftover_interval)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the platform database away: dedicated leftovers wait, nothing else
            self._leftover_failures += 1
            delay = min(60.0, self._interval * 2**self._leftover_failures)
            self._leftovers_due = now + delay
            log.warning("outbox leftover listing failed", retry_in_seconds=delay, error=repr(error))
            return
        self._leftover_failures = 0
        now = time.monotonic()
        self._leftovers_due = now + self._interval
        for name in names:
            self._schedule(name, now)

    def _schedule(self, name: str, now: float, *, recheck: bool = False) -> None:
        """Drain `name` now, or when its backoff ends if it is failing."""
        state = self._states.setdefault(name, _State(due=float("inf")))
        state.due = min(state.due, max(now, state.retry_at))
        state.recheck = state.recheck or recheck

    async def _drain_guarded(self, name: str) -> int:
        state = self._states[name]
        source: Source | None = None
        try:
            # A drain longer than the lease could settle nothing anyway; a database that hangs (rather
            # than refusing) fails here instead of holding its slot for good.
            async with asyncio.timeout(self._lease):
                if name in self._polled:
                    source = self._polled[name]
                    moved = await self._drain(source, state)
                else:  # bounded: at most as many dedicated drains as engines fit in the LRU
                    async with self._slots:
                        source = self._source(name)
                        moved = await self._drain(source, state)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            state.failures += 1
            delay = min(60.0, 0.5 * 2 ** (state.failures - 1))
            state.retry_at = time.monotonic() + delay
            state.recheck = False
            kind: str = source.kind if source is not None else "dedicated"
            SOURCE_FAILURES.labels(kind).inc()
            log.warning(
                "outbox source failed; backing off", source=name, retry_in_seconds=delay, error=repr(error)
            )
            if name in self._polled:
                state.due = state.retry_at
            # A dedicated one is looked at again when a commit or the leftover round names it.
            return 0
        state.failures = 0
        state.retry_at = 0.0
        now = time.monotonic()
        if name in self._polled:
            state.idle_polls = 0 if moved else min(state.idle_polls + 1, 30)
            state.due = now + min(self._idle_poll, self._poll_min * 2**state.idle_polls)
        elif moved == 0 and state.recheck:
            state.recheck = False
            state.due = min(state.due, now + self._recheck_delay)
        elif state.due == float("inf"):
            del self._states[name]  # nothing more to do there until a commit or the leftover round
        return moved

    def _source(self, name: str) -> Source:
        polled = self._polled.get(name)
        if polled is not None:
            return polled
        if self._dedicated is None:
            raise LookupError(f"no source named {name!r}")
        return self._dedicated(name)

    # ---------------------------------------------------------------------------------------- work

    async def _stop_producer(self) -> None:
        self._producer_broken = False
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                request_timeout_ms=10_000,
                max_request_size=self._max_request_size,
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drain(self, source: Source, state: _State) -> int:
        """Claim, send, settle until a claim comes back short; one connection throughout (the engine
        stays checked out, so the LRU never evicts it under a drain)."""
        moved = 0
        started = time.monotonic()
        async with source.engine.connect() as connection:
            while True:
                rows = (
                    await connection.execute(
                        _CLAIM,
                        {
                            "relay": self.relay,
                            "n": self._batch,
                            "lease": self._lease,
                            # Polled sources keep their leases while idle; others hand them back.
                            "release_idle": source.name not in self._polled,
                        },
                    )
                ).all()
                await connection.commit()
                if rows:
                    await self._send_and_settle(source, connection, rows)
                    moved += len(rows)
                if len(rows) < self._batch:
                    break
            now = time.monotonic()
            if now - state.measured_at > 5.0:
                state.measured_at = now
                await self._measure(source, connection)
            if now - state.pruned_at > 600.0:
                state.pruned_at = now
                await connection.execute(_PRUNE, {"keep": self._keep})
                await connection.commit()
        if moved:
            log.debug(
                "outbox drained",
                source=source.name,
                events=moved,
                seconds=round(time.monotonic() - started, 3),
            )
        return moved

    async def _send_and_settle(
        self, source: Source, connection: AsyncConnection, rows: Sequence[Any]
    ) -> None:
        producer = await self._ensure_producer()
        outcomes: list[BaseException | None] = []
        pending: list[tuple[int, Any]] = []
        for index, row in enumerate(rows):
            try:
                future = await producer.send(row.topic, row.payload.encode(), key=str(row.tenant_id).encode())
            except asyncio.CancelledError:
                raise
            except Exception as error:  # raised before queueing: too large for the producer, bad topic
                outcomes.append(error)
            else:
                outcomes.append(None)
                pending.append((index, future))
        if pending:
            results = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
            for (index, _), result in zip(pending, results, strict=True):
                if isinstance(result, BaseException):
                    outcomes[index] = result

        published: list[int] = []
        retry: list[int] = []
        failed: list[int] = []
        failed_errors: list[str] = []
        blocked: set[Any] = set()  # tenants with a transient failure: their later rows go again too
        retry_error: BaseException | None = None
        for row, outcome in zip(rows, outcomes, strict=True):
            if row.tenant_id in blocked:
                retry.append(row.seq)
            elif outcome is None:
                published.append(row.seq)
            elif is_poison(outcome):
                failed.append(row.seq)
                failed_errors.append(repr(outcome))
                log.error(
                    "outbox event can never be sent; settled failed",
                    source=source.name,
                    seq=row.seq,
                    event_id=str(row.event_id),
                    tenant_id=str(row.tenant_id),
                    topic=row.topic,
                    payload_bytes=len(row.payload),
                    error=repr(outcome),
                )
            else:
                blocked.add(row.tenant_id)
                retry.append(row.seq)
                retry_error = retry_error or outcome
        settled = (
            await connection.execute(
                _SETTLE,
                {
                    "relay": self.relay,
                    "tokens": sorted({row.lease_token for row in rows}),
                    "published": published,
                    "retry": retry,
                    "retry_error": repr(retry_error) if retry_error else None,
                    "failed": failed,
                    "failed_errors": failed_errors,
                },
            )
        ).scalar_one()
        await connection.commit()
        _PUBLISHED.inc(len(published))
        _RETRIED.inc(len(retry))
        _FAILED.inc(len(failed))
        if settled < len(rows):
            # The lease lapsed (this relay stalled past it) and another relay took over: it sends them.
            LEASE_LOST.inc(len(rows) - settled)
            log.warning(
                "outbox lease lost before settling", source=source.name, unsettled=len(rows) - settled
            )
        if retry:
            self._producer_broken = True
            log.warning(
                "outbox events sent back for retry",
                source=source.name,
                count=len(retry),
                error=repr(retry_error),
            )

    async def _measure(self, source: Source, connection: AsyncConnection) -> None:
        row = (await connection.execute(_BACKLOG)).one()
        await connection.commit()
        oldest = row.oldest_unsent.timestamp() if row.oldest_unsent is not None else None
        self._backlog[source.name] = (source.kind, int(row.unsent), oldest, int(row.failed), time.monotonic())
        cutoff = time.monotonic() - 600.0  # a source not measured for ten minutes no longer counts
        for name in [n for n, entry in self._backlog.items() if entry[4] < cutoff]:
            del self._backlog[name]
        wall = time.time()
        for kind in KINDS:
            entries = [entry for entry in self._backlog.values() if entry[0] == kind]
            if not entries:
                continue
            BACKLOG.labels(kind).set(sum(entry[1] for entry in entries))
            FAILED_EVENTS.labels(kind).set(sum(entry[3] for entry in entries))
            ages = [wall - entry[2] for entry in entries if entry[2] is not None]
            OLDEST.labels(kind).set(max(ages, default=0.0))


async def sweep_due(engine: AsyncEngine, n: int, min_interval: float) -> list[str]:
    """Dedicated databases due for a leftover sweep, handed out by the platform database."""
    async with engine.connect() as connection:
        rows = (await connection.execute(_SWEEP_DUE, {"n": n, "interval": min_interval})).all()
        await connection.commit()
    return [row.database_name for row in rows]
