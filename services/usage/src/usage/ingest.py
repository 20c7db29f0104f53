"""usage's aggregating consumer: a plain aiokafka loop the service owns (started in its lifespan, as
the outbox relay is), not a FastStream subscriber.

Why not FastStream's batch subscriber: it flattens `getmany()` across partitions, its `ack()`
commits every fetched position rather than the batch's, `nack()` seeks only the first record's
partition, and it has no rebalance hook to seek to offsets stored elsewhere. Exactness here needs
exactly those three things, so the loop holds the consumer itself:

- Offsets live in the database (`usage_offsets`), written in the transaction that applied the
  records (usecases.apply_batch); Kafka's committed offsets are never written nor trusted. On every
  assignment the `ConsumerRebalanceListener` (awaited by aiokafka before `getmany` returns more)
  seeks each partition to its stored offset. A crash mid-batch rolls the transaction back and the
  records are read again from the stored offset; a rebalance that lets two members hold a
  partition for a moment is settled by the locked offset row (the later one skips what the earlier
  applied).
- A batch is one `getmany()` (all partitions it returned) applied in one transaction.
- A message that cannot be parsed goes to `<topic>.dlq` (the headers of events.dead_letter), awaited
  with an acks=all producer, before the batch that moves past it commits. A database failure that
  passes by itself (events.failures) is waited out with backoff, the partitions sought back to the
  batch's first offsets; one that does not is narrowed down to its record by applying the batch
  record by record, and that record is dead-lettered after `attempts` failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from events import dead_letter, kafka_backoff
from events.failures import Failure, InvalidEvent, classify
from events.lag import CONSUMER_LAG
from events.raw_records import RecordLike, raw_values
from events.topics import dlq

from usage import domain
from usage.domain import Counted
from usage.metrics import APPLY_SECONDS, BATCH_SIZE, BATCHES, EVENTS_CONSUMED, SKIPPED
from usage.repository import Partition
from usage.usecases import BatchResult, ExactBatch, PreparedBatch, UsageService

log = structlog.get_logger("usage.ingest")

Fetched = Mapping[TopicPartition, Sequence[RecordLike]]
_LAG_INTERVAL_SECONDS = 15.0
_FETCH_RECORDS = 2000  # per getmany (aiokafka makes them in one go); a batch gathers several
_SLICE = 1000  # records parsed between two turns of the event loop


class Record(NamedTuple):
    """What the consumer keeps of a record it may dead-letter."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _parse_each(values: list[bytes | None], events: list[Counted | None]) -> list[tuple[int, InvalidEvent]]:
    """Appends each value's event (None: not counted, or refused); returns (index, why) of the refused."""
    refused: list[tuple[int, InvalidEvent]] = []
    for index, value in enumerate(values):
        try:
            events.append(domain.parse(value))
        except InvalidEvent as refusal:
            refused.append((index, refusal))
            events.append(None)
    return refused


class Gathered:
    """The records of a batch, as they are fetched: tallied (no object per event; the exact form is
    parsed again only if the tally cannot be applied), or, when the previous batch was not fresh
    (a replay, where nearly every batch is decided event by event and a tally is wasted work),
    parsed event by event at once. Kept as columns of offsets, keys and values per partition (ints
    and bytes: nothing the cycle collector traverses) rather than aiokafka's record objects: tens of
    thousands of those alive per batch made every collection walk them all."""

    def __init__(self, *, tallying: bool = True) -> None:
        self.size = 0
        self.spans: dict[TopicPartition, tuple[int, int]] = {}  # first and last offset
        self.tally = domain.Tally()
        self.tally.regular = tallying
        self.invalid: list[tuple[Record, InvalidEvent]] = []
        self.ignored = 0  # records of types usage does not follow
        self._offsets: dict[TopicPartition, list[int]] = {}
        self._keys: dict[TopicPartition, list[bytes | None]] = {}
        self._values: dict[TopicPartition, list[bytes | None]] = {}
        # Not tallying: each record's event (None: not counted), as the exact form holds them.
        self._events: dict[TopicPartition, list[Counted | None]] | None = None if tallying else {}

    async def add(self, fetched: Fetched) -> None:
        """Parses in slices, letting the event loop run between them: the previous batch's
        transaction waits for the loop at each of its statements, and would otherwise wait behind
        a whole fetch's parse each time."""
        for tp, all_records in fetched.items():
            for start in range(0, len(all_records), _SLICE):
                await asyncio.sleep(0)
                self._add(tp, all_records[start : start + _SLICE])

    def _add(self, tp: TopicPartition, records: Sequence[RecordLike]) -> None:
        if not records:
            return
        offsets = [record.offset for record in records]
        values = [record.value for record in records]
        self._offsets.setdefault(tp, []).extend(offsets)
        self._keys.setdefault(tp, []).extend([record.key for record in records])
        self._values.setdefault(tp, []).extend(values)
        self.size += len(records)
        first = self.spans[tp][0] if tp in self.spans else offsets[0]
        self.spans[tp] = (first, offsets[-1])
        if self._events is None:
            ignored = self.tally.ignored
            refused = self.tally.add_values(values)
            self.ignored += self.tally.ignored - ignored
        else:
            refused = self._parse(values, self._events.setdefault(tp, []))
        for index, refusal in refused:
            record = records[index]
            self.invalid.append(
                (Record(tp.topic, tp.partition, record.offset, record.key, record.value), refusal)
            )

    def _parse(
        self, values: list[bytes | None], events: list[Counted | None]
    ) -> list[tuple[int, InvalidEvent]]:
        refused = _parse_each(values, events)
        self.ignored += sum(event is None for event in events[len(events) - len(values) :]) - len(refused)
        return refused

    def exact(self) -> ExactBatch:
        """Each record parsed on its own (None: not counted, or refused and dead-lettered)."""
        batch: dict[Partition, list[tuple[int, Counted | None]]] = {}
        for tp, offsets in self._offsets.items():
            if self._events is not None:
                events: list[Counted | None] = self._events[tp]
            else:
                events = []
                _parse_each(self._values[tp], events)
            batch[(tp.topic, tp.partition)] = list(zip(offsets, events, strict=True))
        return batch

    def prepared(self) -> PreparedBatch:
        spans = {(tp.topic, tp.partition): span for tp, span in self.spans.items()}
        return PreparedBatch(spans, self.tally, self.exact)

    def records(self) -> dict[Partition, dict[int, Record]]:
        return {
            (tp.topic, tp.partition): {
                offset: Record(tp.topic, tp.partition, offset, key, value)
                for offset, key, value in zip(offsets, self._keys[tp], self._values[tp], strict=True)
            }
            for tp, offsets in self._offsets.items()
        }


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: AggregatingConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Nothing to commit: what was applied is in the database with its offsets.
        log.info("partitions revoked", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._owner.seek_to_stored(list(assigned))


def _pause(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
    """aiokafka ends the rebalance (getmany returns records again) before it awaits this listener,
    and meanwhile positions the new partitions at the group's reset (the beginning: no offset is
    committed to Kafka). Unpaused while the stored offsets are read, they fetched old records that
    every first batch after a start or rebalance then read, dropped as below the stored offset,
    and applied event by event. Paused, aiokafka discards what it fetched for them."""
    with contextlib.suppress(Exception):  # revoked meanwhile: nothing to pause
        consumer.pause(*partitions)


class AggregatingConsumer:
    def __init__(
        self,
        service: UsageService,
        *,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        client_id: str,
        max_records: int = 50_000,
        fetch_wait_ms: int = 100,
        attempts: int = 5,
        max_backoff: float = 5.0,
        on_committed: Callable[[Mapping[TopicPartition, tuple[int, int]]], None] | None = None,
    ) -> None:
        """`on_committed(spans)`: called with each batch's first and last offset per partition once
        its transaction committed (the benchmark times events with it)."""
        self._service = service
        self._bootstrap = bootstrap_servers
        self.group_id = group_id
        self._topics = list(topics)
        self._client_id = client_id
        self._max_records = max_records
        self._fetch_wait_ms = fetch_wait_ms
        self._attempts = attempts
        self._max_backoff = max_backoff
        self._on_committed = on_committed
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._lag_sampled = 0.0
        self._positions: dict[TopicPartition, int] = {}  # next offset after the last applied batch
        self._expect_fresh = True
        self.first_fetch_at: float | None = None  # perf_counter of the first non-empty fetch
        self.batches = 0  # applied batches (tests and the benchmark read these)
        self.applied = 0

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"usage-consumer:{self.group_id}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._connect()
                failures = 0
                await self._loop()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                delay = self._backoff(failures)
                log.warning(
                    "usage consumer failed; reconnecting", error=repr(error)[:500], retry_in_seconds=delay
                )
                await self._close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        await self._close()

    async def _connect(self) -> None:
        kafka_backoff.install()  # no refresh loop without pause while the brokers are down
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_wait_ms,
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=8 * 1024 * 1024,
            # aiokafka's decoded records, not a ConsumerRecord each (events.raw_records): the same
            # offset, key and value, half the cost per record.
            value_deserializer=raw_values,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}:dlq",
            acks="all",
            enable_idempotence=True,
        )
        self._consumer, self._producer = consumer, producer
        try:
            await self._service.warm_up(self.group_id)
        except Exception as error:  # the database away: the first batch waits for it anyway
            log.warning("usage consumer not warmed up", error=repr(error)[:300])
        await producer.start()
        consumer.subscribe(self._topics, listener=_SeekToStored(self))
        await consumer.start()
        log.info("usage consumer started", group=self.group_id, topics=self._topics)

    async def _close(self) -> None:
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        for client in (consumer, producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self._max_backoff, 0.2 * 2 ** min(attempt - 1, 16))
        return delay * random.uniform(0.8, 1.2)

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Position each assigned partition at the offset stored with the counts (the beginning when
        none is stored). If the database cannot be asked, the partitions stay where the group's
        reset puts them (the beginning): slower, still exact, since applying skips what is stored."""
        consumer = self._consumer
        if consumer is None or not partitions:
            return
        _pause(consumer, partitions)
        try:
            await self._seek_to_stored(consumer, partitions)
        finally:
            with contextlib.suppress(Exception):
                consumer.resume(*partitions)

    async def _seek_to_stored(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        stored: dict[Partition, int] = {}
        for attempt in range(1, 4):
            try:
                stored = await self._service.stored_offsets(self.group_id, keys)
                break
            except Exception as error:
                log.warning("stored offsets not read", attempt=attempt, error=repr(error)[:300])
                await asyncio.sleep(self._backoff(attempt))
        fresh = []
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                fresh.append(tp)
                self._positions[tp] = 0
            else:
                consumer.seek(tp, offset)
                self._positions[tp] = offset
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        log.info(
            "partitions assigned",
            group=self.group_id,
            stored={f"{t}:{p}": o for (t, p), o in sorted(stored.items())},
            from_beginning=sorted(f"{tp.topic}:{tp.partition}" for tp in fresh),
        )

    async def _loop(self) -> None:
        """Batch N's transaction runs while the records fetched meanwhile are tallied into batch N+1
        (parsing is this process's CPU, applying mostly PostgreSQL's); N+1 starts when N committed,
        with whatever arrived meanwhile, up to `max_records`. So a batch is as large as the backlog
        makes it: a few records under light traffic (latency), tens of thousands under a backlog
        (each key written once for more events). Batches are applied one at a time, in order."""
        consumer = self._consumer
        assert consumer is not None
        pending: asyncio.Task[bool] | None = None
        pending_partitions: frozenset[TopicPartition] = frozenset()
        gathered: Gathered | None = None
        try:
            while not self._stopping.is_set():
                room = self._max_records - (gathered.size if gathered is not None else 0)
                fetched: Fetched = {}
                if room > 0:
                    # Short waits while a transaction runs: its end is noticed within them.
                    wait = 500 if pending is None and gathered is None else 20
                    fetched = await consumer.getmany(timeout_ms=wait, max_records=min(room, _FETCH_RECORDS))
                if fetched:
                    if self.first_fetch_at is None:
                        self.first_fetch_at = time.perf_counter()
                    if gathered is None:
                        gathered = Gathered(tallying=self._expect_fresh)
                    await gathered.add(fetched)
                if pending is not None and (pending.done() or room <= 0):
                    applied = await pending
                    pending = None
                    if not applied and gathered is not None:
                        # The previous batch was sought back (not applied): nothing fetched after
                        # it may be applied first. Its partitions are already sought to earlier
                        # offsets; the others go back to this batch's start.
                        self._seek_back(consumer, gathered, skip=pending_partitions)
                        gathered = None
                        continue
                if pending is None and gathered is not None:
                    batch = gathered
                    gathered = None
                    pending = asyncio.create_task(self._commit(consumer, batch))
                    pending_partitions = frozenset(batch.spans)
                try:
                    await self._service.roll_month_if_due()
                except Exception as error:  # the database away: tried again next turn
                    log.warning("month rollover not checked", error=repr(error)[:300])
                if time.monotonic() - self._lag_sampled > _LAG_INTERVAL_SECONDS:
                    await self._sample_lag(consumer)
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending

    async def _commit(self, consumer: AIOKafkaConsumer, gathered: Gathered) -> bool:
        """Dead letters, then the batch's transaction. False: not applied, the partitions sought
        back to the batch's first offsets (read again)."""
        try:
            for record, refusal in gathered.invalid:
                await self._dead_letter(record, refusal, Failure.INVALID, 1)
        except Exception as error:
            # The dead letter is not durable yet: nothing past it may be applied. Read it all again.
            log.warning("dead-letter publish failed; batch will be read again", error=repr(error)[:300])
            self._seek_back(consumer, gathered)
            await asyncio.sleep(self._backoff(1))
            return False
        started = time.perf_counter()
        result = await self._apply(consumer, gathered)
        if result is None:
            return False
        APPLY_SECONDS.observe(time.perf_counter() - started)
        BATCH_SIZE.observe(gathered.size)
        BATCHES.labels("tally" if result.tallied else "exact").inc()
        self.batches += 1
        self.applied += result.applied
        # The next batch is tallied if this one could have been: under a replay, batch after batch
        # is not fresh, and the tally would only be parsed again.
        self._expect_fresh = result.tallied or not (
            result.duplicates or result.below_offset or result.unknown_tenant
        )
        for tp, (_, last) in gathered.spans.items():
            self._positions[tp] = last + 1
        if self._on_committed is not None:
            self._on_committed(gathered.spans)
        for event_type, count in result.counted.items():
            EVENTS_CONSUMED.labels(event_type).inc(count)
        for reason, count in (
            ("below_offset", result.below_offset),
            ("duplicate", result.duplicates),
            ("unknown_tenant", result.unknown_tenant),
            ("ignored", gathered.ignored),
            ("dead_lettered", len(gathered.invalid)),
        ):
            if count:
                SKIPPED.labels(reason).inc(count)
        return True

    async def _apply(self, consumer: AIOKafkaConsumer, gathered: Gathered) -> BatchResult | None:
        """Apply with retries; None when the batch was given up for now (sought back, read again)."""
        batch = gathered.prepared()
        errors = 0
        transient = 0
        while not self._stopping.is_set():
            try:
                return await self._service.apply_batch(self.group_id, batch)
            except Exception as error:
                kind = classify(error)
                context = {"group": self.group_id, "records": gathered.size, "error": repr(error)[:500]}
                if kind is Failure.TRANSIENT:
                    transient += 1
                    delay = self._backoff(transient)
                    log.warning("batch not applied (transient); retrying", retry_in_seconds=delay, **context)
                    await asyncio.sleep(delay)
                    continue
                errors += 1
                if errors < self._attempts:
                    log.warning("batch not applied; retrying", attempt=errors, **context)
                    await asyncio.sleep(self._backoff(errors))
                    continue
                log.error("batch keeps failing; applying it record by record", **context)
                return await self._apply_one_by_one(gathered)
        self._seek_back(consumer, gathered)  # stopping: whatever was not applied is read again next time
        return None

    async def _apply_one_by_one(self, gathered: Gathered) -> BatchResult:
        total = BatchResult()
        records = gathered.records()
        for partition, entries in gathered.exact().items():
            for offset, event in entries:
                result = await self._apply_single(records[partition][offset], event)
                total.applied += result.applied
                total.below_offset += result.below_offset
                total.duplicates += result.duplicates
                total.unknown_tenant += result.unknown_tenant
                total.crossings += result.crossings
                for kind, count in result.counted.items():
                    total.counted[kind] = total.counted.get(kind, 0) + count
        return total

    async def _apply_single(self, record: Record, event: Counted | None) -> BatchResult:
        """One record: transient failures waited out, any other dead-letters it after `attempts`."""
        single: ExactBatch = {(record.topic, record.partition): [(record.offset, event)]}
        errors = 0
        while True:
            try:
                return await self._service.apply_batch(self.group_id, PreparedBatch.of_exact(single))
            except Exception as error:
                if classify(error) is Failure.TRANSIENT:
                    await asyncio.sleep(self._backoff(2))
                    continue
                errors += 1
                if errors < self._attempts:
                    await asyncio.sleep(self._backoff(errors))
                    continue
                await self._dead_letter(record, error, Failure.ERROR, errors)
                single = {(record.topic, record.partition): [(record.offset, None)]}
                errors = -(10**9)  # the record itself is out; only the offset is left to store

    def _seek_back(
        self, consumer: AIOKafkaConsumer, gathered: Gathered, skip: frozenset[TopicPartition] = frozenset()
    ) -> None:
        for tp, (first, _) in gathered.spans.items():
            if tp not in skip:
                with contextlib.suppress(Exception):  # revoked meanwhile: its new owner seeks anyway
                    consumer.seek(tp, first)

    async def _dead_letter(self, record: Record, error: Exception, kind: Failure, attempts: int) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("no dead-letter producer")
        event_id = dead_letter.event_id_of(record.value)
        headers = {
            dead_letter.ERROR: f"{type(error).__name__}: {error}"[:1000],
            dead_letter.ERROR_KIND: kind.value,
            dead_letter.ORIGINAL_TOPIC: record.topic,
            dead_letter.ORIGINAL_PARTITION: str(record.partition),
            dead_letter.ORIGINAL_OFFSET: str(record.offset),
            dead_letter.GROUP: self.group_id,
            dead_letter.ATTEMPTS: str(attempts),
            dead_letter.DEAD_LETTERED_AT: datetime.now(UTC).isoformat(),
        }
        if event_id is not None:
            headers[dead_letter.EVENT_ID] = event_id
        await producer.send_and_wait(
            dlq(record.topic),
            value=record.value,
            key=record.key,
            headers=[(name, value.encode()) for name, value in headers.items()],
        )
        dead_letter.DEAD_LETTERED.labels(record.topic).inc()
        dead_letter.count_outcome(record.topic, "dead_lettered")
        log.error(
            "message dead-lettered",
            dlq=dlq(record.topic),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            group=self.group_id,
            event_id=event_id,
            error=headers[dead_letter.ERROR],
        )

    def caught_up(self, topic: str) -> bool:
        """Whether every partition of `topic` this process holds is applied up to its high watermark
        (False when it holds none: it cannot tell)."""
        consumer = self._consumer
        if consumer is None:
            return False
        held = [tp for tp in consumer.assignment() if tp.topic == topic]
        if not held:
            return False
        for tp in held:
            highwater = consumer.highwater(tp)
            if highwater is None or (highwater > 0 and self._positions.get(tp, -1) < highwater):
                return False
        return True

    async def _sample_lag(self, consumer: AIOKafkaConsumer) -> None:
        self._lag_sampled = time.monotonic()
        lag: dict[str, int] = dict.fromkeys(self._topics, 0)
        try:
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    lag[tp.topic] += max(0, highwater - await consumer.position(tp))
        except Exception as error:
            log.debug("consumer lag not sampled", error=repr(error))
            return
        for topic, value in lag.items():
            CONSUMER_LAG.labels(self.group_id, topic).set(value)
