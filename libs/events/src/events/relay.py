"""The outbox relay: publishes committed events to Kafka, at least once, in order per tenant.

One loop per process drains the source databases (platform, shared, each dedicated one the caller
lists). A commit in this process names its database (`notify(source)`), and only that database is
drained at once; every `sweep_interval` all of them are, which picks up what a crashed process or
another writer left behind. So an idle service with many dedicated databases costs each of them one
query per sweep, not one per poll. Draining claims ready rows (`outbox_claim`, which skips a tenant
whose earlier event is still in flight or backing off), sends them with an idempotent `acks=all`
producer keyed by tenant id, and settles them: published, or back to pending with exponential
backoff. If Kafka is down the rows wait in the database; if the process dies mid-batch the claim's
lease expires and another relay (or this one, restarted) sends them again. Consumers deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger("events.relay")

PUBLISHED = Counter("outbox_events_published_total", "Outbox events published to Kafka")
RETRIED = Counter("outbox_events_retried_total", "Outbox events sent back to pending after a failed send")
LAG = Gauge("outbox_last_batch_size", "Events claimed by the relay's last pass over all sources")

_CLAIM = text(
    "SELECT seq, tenant_id, topic, payload::text AS payload FROM outbox_claim(:n, :lease) ORDER BY seq"
)
_PUBLISHED = text("SELECT outbox_published(CAST(:seqs AS bigint[]))")
_RETRY = text("SELECT outbox_retry(CAST(:seqs AS bigint[]), :error)")
_PRUNE = text("SELECT outbox_prune(CAST(:keep AS interval))")


@dataclass(frozen=True)
class Source:
    name: str  # for logs only: "platform", "shared", a dedicated database's name
    engine: AsyncEngine


SourceLister = Callable[[], Awaitable[Sequence[Source]]]


class OutboxRelay:
    def __init__(
        self,
        bootstrap_servers: str,
        sources: SourceLister,
        *,
        batch_size: int = 500,
        sweep_interval: float = 1.0,
        lease_seconds: int = 30,
        keep_published: str = "1 day",
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._sources = sources
        self._batch = batch_size
        self._interval = sweep_interval
        self._lease = lease_seconds
        self._keep = keep_published
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()  # sources with a commit not yet drained
        self._sweep_requested = True  # the first pass covers everything: rows left by a previous life
        self._passes = 0
        self._failing: dict[str, tuple[int, float]] = {}  # source -> (failures in a row, retry at)

    def notify(self, source: str | None = None) -> None:
        """Events were just committed in `source` (None: somewhere): drain it now, not at the sweep."""
        if source is None:
            self._sweep_requested = True
        else:
            self._dirty.add(source)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
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
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _run(self) -> None:
        backoff = self._interval
        next_sweep = 0.0
        while True:
            self._wake.clear()
            now = time.monotonic()
            sweep = self._sweep_requested or now >= next_sweep
            only: set[str] | None = None if sweep else self._dirty
            self._dirty = set()
            if sweep:
                self._sweep_requested = False
                next_sweep = now + self._interval
            try:
                busy = await self._pass(only)
                backoff = self._interval
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Kafka or a database away: keep the rows, try again later
                log.warning("outbox relay pass failed", error=repr(error))
                busy = set()
                backoff = min(backoff * 2, 5.0)
                next_sweep = time.monotonic() + backoff
                if self._producer is not None:
                    with contextlib.suppress(Exception):
                        await self._producer.stop()
                    self._producer = None
            if busy:
                self._dirty |= busy  # a full batch: more may be waiting there
                continue
            if self._dirty or self._sweep_requested:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_sweep - time.monotonic()))

    async def _pass(self, only: set[str] | None) -> set[str]:
        """Drain the sources named in `only` (None: all); returns those that filled a whole batch
        (more may be waiting there)."""
        self._passes += 1
        total = 0
        busy: set[str] = set()
        failure: Exception | None = None
        now = time.monotonic()
        for source in await self._sources():
            if only is not None and source.name not in only:
                continue
            # One unreachable database (a dedicated one being dropped or moved, wrong credentials) must
            # neither hold back the sources after it nor be hammered every pass: it is retried with
            # exponential backoff (capped at a minute) while the others go on.
            failures, retry_at = self._failing.get(source.name, (0, 0.0))
            if retry_at > now:
                continue
            try:
                moved = await self._drain(source)
                total += moved
                if moved >= self._batch:
                    busy.add(source.name)
                if self._passes % 3000 == 0:
                    async with source.engine.connect() as connection:
                        await connection.execute(_PRUNE, {"keep": self._keep})
                        await connection.commit()
            except Exception as error:
                delay = min(60.0, 0.5 * 2**failures)
                self._failing[source.name] = (failures + 1, now + delay)
                log.warning(
                    "outbox source skipped", source=source.name, retry_in_seconds=delay, error=repr(error)
                )
                failure = failure or error
            else:
                self._failing.pop(source.name, None)
        LAG.set(total)
        if failure is not None and total == 0:
            raise failure
        return busy

    async def _drain(self, source: Source) -> int:
        async with source.engine.connect() as connection:
            rows = (await connection.execute(_CLAIM, {"n": self._batch, "lease": self._lease})).all()
            await connection.commit()
        if not rows:
            return 0
        producer = await self._ensure_producer()
        sends: list[Any] = []
        for row in rows:
            sends.append(
                await producer.send(row.topic, row.payload.encode(), key=str(row.tenant_id).encode())
            )
        results = await asyncio.gather(*sends, return_exceptions=True)
        done: list[int] = []
        failed: list[int] = []
        error: BaseException | None = None
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException) or error is not None:
                # Keep order: after the first failure, everything behind it goes again.
                error = error or (result if isinstance(result, BaseException) else None)
                failed.append(row.seq)
            else:
                done.append(row.seq)
        async with source.engine.connect() as connection:
            if done:
                await connection.execute(_PUBLISHED, {"seqs": done})
            if failed:
                await connection.execute(_RETRY, {"seqs": failed, "error": repr(error)})
            await connection.commit()
        PUBLISHED.inc(len(done))
        RETRIED.inc(len(failed))
        if failed:
            log.warning(
                "outbox events sent back for retry", source=source.name, count=len(failed), error=repr(error)
            )
        return len(done)
