"""The outbox relay vs a raw idempotent aiokafka producer, same payloads, same run.

- `events.relay` (events/s, ratio = raw / ours, target <= 2.0): 100,000 events over 500 tenants are
  committed into the shared outbox (transactions of 100 events of one tenant, 4 committers, through
  `events.outbox.record`), then two relay processes (`python -m servicekit.relay`) publish them; the
  rate is from the first of them settled published (acknowledged by Kafka, acks=all) to the last, so
  the processes' start-up is left out. The baseline sends the same 100,000 payloads with one
  idempotent acks=all aiokafka producer, as fast as it goes.
- `events.relay_latency_p99` (ms, baseline the raw producer's p99): one event per transaction at a
  steady 1,000 events/s for 10 s (16 committers on raw asyncpg in a process of their own,
  `synchronous_commit = off` for them only, else this machine cannot offer the rate); latency is
  from COMMIT returning to a consumer receiving the event (raw: from `send()` to receiving it). If
  the committers cannot keep the offered rate (the load generator saturates, not the relay), no
  number is reported.
Events go to a topic of their own, so no service consumes them. The outbox is vacuumed and analyzed
before each of the two runs: the bench's own 100,000-row backlog makes it due for autovacuum, which,
when it fell into a run (about half of them), halved the drain rate or doubled the p99.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from events import outbox
from events.envelope import Envelope
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenantschema.urls import asyncpg_url, libpq_url, with_database

from bench import Measure
from bench.processes import relays

BENCHMARKS = ("events.relay", "events.relay_latency_p99")

TOPIC = "bench.events.v1"
EVENTS = 100_000
TENANTS = 500
PER_TRANSACTION = 100
COMMITTERS = 4
LATENCY_COMMITTERS = 16  # one event per transaction: concurrency lets commits share WAL flushes
RATE = 1000.0  # events/s for the latency run
LATENCY_SECONDS = 10.0
RELAYS = 2


# events.outbox.record's INSERT (tenant lock first), in asyncpg's parameter style.
_RECORD_SQL = (
    "WITH tenant_lock AS MATERIALIZED ("
    "SELECT pg_advisory_xact_lock(hashtextextended('outbox:' || $2::uuid::text, 0))) "
    "INSERT INTO outbox (event_id, tenant_id, topic, event_type, payload) "
    "SELECT $1::uuid, $2::uuid, $3, $4, $5::jsonb FROM tenant_lock"
)


def _say(message: str) -> None:
    print(f"bench: events: {message}", file=sys.stderr, flush=True)


def _envelope(tenant: uuid.UUID, i: int) -> Envelope:
    return Envelope(
        event_type="product.updated",
        tenant_id=tenant,
        producer="bench",
        data={"product_id": str(uuid.uuid4()), "name": f"Product {i}", "price": "19.99", "i": i},
    )


async def _published(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM outbox WHERE event_id = ANY($1::uuid[]) AND state = 'published'", ids
    )
    return count


async def _wait_published(conn: asyncpg.Connection, ids: list[uuid.UUID], within: float) -> float:
    deadline = time.perf_counter() + within
    while await _published(conn, ids) < len(ids):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"relays did not publish {len(ids)} events within {within:.0f} s")
        await asyncio.sleep(0.1)
    return time.perf_counter()


async def _commit_backlog(engine: AsyncEngine, tenants: list[uuid.UUID]) -> list[Envelope]:
    batches = [
        [_envelope(tenants[b % TENANTS], b * PER_TRANSACTION + k) for k in range(PER_TRANSACTION)]
        for b in range(EVENTS // PER_TRANSACTION)
    ]
    queue = list(reversed(batches))

    async def committer() -> None:
        while queue:
            batch = queue.pop()
            async with engine.begin() as connection:
                await outbox.record(connection, TOPIC, *batch)

    started = time.perf_counter()
    await asyncio.gather(*(committer() for _ in range(COMMITTERS)))
    _say(f"committed {EVENTS} events in {time.perf_counter() - started:.1f} s")
    return [e for batch in batches for e in batch]


async def _drain_rate(owner: asyncpg.Connection, ids: list[uuid.UUID]) -> float:
    """Events/s from the first of them acknowledged and settled to the last (relay start-up excluded)."""
    await _wait_published(owner, ids, 900)
    seconds: float = await owner.fetchval(
        "SELECT extract(epoch FROM max(published_at) - min(published_at))::float8 FROM outbox "
        "WHERE event_id = ANY($1::uuid[])",
        ids,
    )
    return len(ids) / max(1e-3, seconds)


async def _raw_throughput(bootstrap: str, payloads: list[bytes], tenants: list[uuid.UUID]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(TOPIC, payload, key=str(tenants[i // PER_TRANSACTION % TENANTS]).encode())
            for i, payload in enumerate(payloads)
        ]
        await asyncio.gather(*futures)
        return len(payloads) / (time.perf_counter() - started)
    finally:
        await producer.stop()


class _Receiver:
    """Receive times of events on the bench topic, by event id, from the moment it started."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.received: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
        )
        await consumer.start()
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        self._consumer = consumer

        async def pump() -> None:
            async for record in consumer:
                self.received.setdefault(json.loads(record.value)["event_id"], time.perf_counter())

        self._task = asyncio.create_task(pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def _offer(send: Callable[[Envelope], Awaitable[float]], tenants: list[uuid.UUID]) -> _Offered:
    """Offer RATE events/s for LATENCY_SECONDS through `send(envelope) -> sent time` (perf_counter,
    CLOCK_MONOTONIC: comparable across the processes of this machine)."""
    total = int(RATE * LATENCY_SECONDS)
    sent: dict[str, float] = {}
    late = 0
    envelopes = [_envelope(tenants[k % TENANTS], k) for k in range(total)]  # made before the clock starts
    started = time.perf_counter()

    async def worker(w: int) -> None:
        nonlocal late
        for k in range(w, total, LATENCY_COMMITTERS):
            at = started + k / RATE
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                late += 1
            envelope = envelopes[k]
            sent[str(envelope.event_id)] = await send(envelope)

    await asyncio.gather(*(worker(w) for w in range(LATENCY_COMMITTERS)))
    return _Offered(sent, total / (time.perf_counter() - started), late)


@dataclass(frozen=True)
class _Offered:
    sent: dict[str, float]  # event id -> when it was committed (or sent, for the raw producer)
    achieved: float  # events/s
    late: int  # events offered more than 50 ms after their slot


async def _commit_steadily(owner_url: str, tenants: list[uuid.UUID]) -> _Offered:
    """The load generator: events.outbox.record's statement on raw asyncpg, one autocommitted statement
    per event, synchronous_commit off for these sessions only (the relays' own commits stay
    synchronous). Through SQLAlchemy with synchronous commits this machine offers only ~250 commits/s:
    the generator, not the relay. Plain connections handed round a queue, not an asyncpg pool: the
    pool's reset on release is a second round trip per event, and with it this process saturated."""
    connections = [
        await asyncpg.connect(owner_url, server_settings={"synchronous_commit": "off"})
        for _ in range(LATENCY_COMMITTERS)
    ]
    idle: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)
    try:

        async def commit(envelope: Envelope) -> float:
            connection = await idle.get()
            try:
                await connection.execute(
                    _RECORD_SQL,
                    envelope.event_id,
                    envelope.tenant_id,
                    TOPIC,
                    envelope.event_type,
                    envelope.model_dump_json(),
                )
            finally:
                idle.put_nowait(connection)
            return time.perf_counter()

        return await _offer(commit, tenants)
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))


def _committer_process(owner_url: str, tenants: list[uuid.UUID], results: Any) -> None:
    """A process of its own for the generator: sharing one with the receiver, it fell behind."""
    offered = asyncio.run(_commit_steadily(owner_url, tenants))
    results.put((offered.sent, offered.achieved, offered.late))


async def _commit_in_child(owner_url: str, tenants: list[uuid.UUID]) -> _Offered:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_committer_process, args=(owner_url, tenants, results))
    child.start()
    try:
        sent, achieved, late = await asyncio.get_running_loop().run_in_executor(
            None, results.get, True, LATENCY_SECONDS + 120
        )
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    return _Offered(sent, achieved, late)


async def _latency(offered: _Offered, receiver: _Receiver, what: str) -> float | None:
    """The p99 in ms from sent to received, or None when the load generator could not keep the rate."""
    total = int(RATE * LATENCY_SECONDS)
    sent = offered.sent
    deadline = time.perf_counter() + 60
    while any(e not in receiver.received for e in sent) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    latencies = [(receiver.received[e] - t) * 1000 for e, t in sent.items() if e in receiver.received]
    if len(latencies) < total:
        raise RuntimeError(f"{what}: only {len(latencies)} of {total} events arrived")
    p99 = _p99(latencies)
    if offered.achieved < 0.95 * RATE or offered.late > 0.05 * total:
        _say(
            f"{what}: the load generator saturated ({offered.achieved:.0f} events/s offered of "
            f"{RATE:.0f}, {offered.late} late): no result (for information only, p99 at that rate "
            f"{p99:.1f} ms)"
        )
        return None
    _say(
        f"{what}: {offered.achieved:.0f} events/s offered, "
        f"p50 {sorted(latencies)[len(latencies) // 2]:.1f} ms, p99 {p99:.1f} ms"
    )
    return p99


async def run(selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    from devstack.kafka import ensure_topics

    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    await ensure_topics(bootstrap, [TOPIC])
    owner_url = libpq_url(with_database(env["OWNER_DATABASE_URL"], "shared"))
    owner = await asyncpg.connect(owner_url)
    # The owner writes (the outbox's RLS is not forced; a service would write as its tenant).
    engine = create_async_engine(asyncpg_url(owner_url), pool_size=LATENCY_COMMITTERS, max_overflow=0)
    tenants = [uuid.uuid4() for _ in range(TENANTS)]
    measures: list[Measure] = []
    log_dir = Path(env.get("DEVSTACK_DIR", ".devstack")) / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if "events.relay" in selected:
            # A backlog first, then the relays: what is measured is how fast two relays drain it.
            backlog = await _commit_backlog(engine, tenants)
            # The 100,000 inserts make the outbox due for autovacuum and autoanalyze; falling into the
            # drain (about half the runs) they halved its rate. Done now, they are not measured.
            await owner.execute("VACUUM (ANALYZE) outbox")
            with relays(env, log_dir, RELAYS):
                ours = await _drain_rate(owner, [e.event_id for e in backlog])
            raw = await _raw_throughput(bootstrap, [e.model_dump_json().encode() for e in backlog], tenants)
            _say(f"2 relays drained {ours:.0f} events/s, raw producer {raw:.0f} events/s")
            measures.append(
                Measure("events.relay", round(ours, 1), "events/s", round(raw, 1), round(raw / ours, 3))
            )

        # The drain above left 100,000 rows updated: autovacuum's turn, done before this run too.
        await owner.execute("VACUUM (ANALYZE) outbox")
        with relays(env, log_dir, RELAYS):
            warm = [_envelope(t, -1) for t in tenants[:20]]
            async with engine.begin() as connection:
                await outbox.record(connection, TOPIC, *warm)
            await _wait_published(owner, [e.event_id for e in warm], 120)  # both relays up and working
            await asyncio.sleep(2)

            if "events.relay_latency_p99" in selected:
                receiver = _Receiver(bootstrap)
                await receiver.start()
                producer = AIOKafkaProducer(
                    bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
                )
                await producer.start()
                try:

                    async def send_raw(envelope: Envelope) -> float:
                        at = time.perf_counter()
                        await producer.send(TOPIC, envelope.to_json(), key=envelope.key())
                        return at

                    ours_p99 = await _latency(await _commit_in_child(owner_url, tenants), receiver, "relay")
                    raw_p99 = await _latency(await _offer(send_raw, tenants), receiver, "raw producer")
                finally:
                    await producer.stop()
                    await receiver.stop()
                if ours_p99 is not None and raw_p99 is not None:
                    measures.append(
                        Measure(
                            "events.relay_latency_p99",
                            round(ours_p99, 2),
                            "ms",
                            round(raw_p99, 2),
                            round(ours_p99 / raw_p99, 3),
                        )
                    )
    finally:
        await owner.execute("DELETE FROM outbox WHERE topic = $1", TOPIC)
        await owner.close()
        await engine.dispose()
    return measures
