"""The outbox relay: publishes committed events to Kafka, at least once, in order per tenant.

One loop per process polls every source database (platform, shared, each dedicated one the caller
lists): it claims ready rows (`outbox_claim`, which skips a tenant whose earlier event is still in
flight or backing off), sends them with an idempotent `acks=all` producer keyed by tenant id, and
settles them: published, or back to pending with exponential backoff. If Kafka is down the rows wait
in the database; if the process dies mid-batch the claim's lease expires and another relay (or this
one, restarted) sends them again. Consumers deduplicate by event id.
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
        poll_interval: float = 0.1,
        lease_seconds: int = 30,
        keep_published: str = "1 day",
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._sources = sources
        self._batch = batch_size
        self._interval = poll_interval
        self._lease = lease_seconds
        self._keep = keep_published
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._passes = 0
        self._failing: dict[str, tuple[int, float]] = {}  # source -> (failures in a row, retry at)

    def notify(self) -> None:
        """Something was just committed: look now instead of at the next poll."""
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
        while True:
            try:
                moved = await self.run_once()
                backoff = self._interval
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Kafka or a database away: keep the rows, try again later
                log.warning("outbox relay pass failed", error=repr(error))
                moved = 0
                backoff = min(backoff * 2, 5.0)
                if self._producer is not None:
                    with contextlib.suppress(Exception):
                        await self._producer.stop()
                    self._producer = None
            if moved:
                continue  # more may be waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)

    async def run_once(self) -> int:
        """One pass over every source; returns how many events were published."""
        self._passes += 1
        total = 0
        failure: Exception | None = None
        now = time.monotonic()
        for source in await self._sources():
            # One unreachable database (a dedicated one being dropped or moved, wrong credentials) must
            # neither hold back the sources after it nor be hammered every pass: it is retried with
            # exponential backoff (capped at a minute) while the others go on.
            failures, retry_at = self._failing.get(source.name, (0, 0.0))
            if retry_at > now:
                continue
            try:
                total += await self._drain(source)
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
        return total

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
