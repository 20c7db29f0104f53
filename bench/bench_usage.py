"""usage's aggregating consumer vs a raw aiokafka consumer that only reads, same records, same run.

- `usage.aggregate` (events/s, ratio = raw / ours, target <= 2.0): 200,000 envelopes (90 %
  `api.requests_counted` numbered by four counters as servicekit's are, 10 % `product.created`)
  over 1,000 tenants, Zipf-skewed (the tenant of an
  event is drawn with weight 1/rank: the top 1 % of tenants carry ~40 % of the events), are produced
  into two bench topics of 6 partitions first; then usage's consumer (usage.ingest, the service's
  code, in this process) applies them from a fresh group positioned at the backlog's start, timed
  from its first fetched batch until the transaction that stored the last offset committed. The
  baseline reads the same records with a plain `getmany` loop, timed from its first record to its
  last; it runs before and after ours and the faster of its two runs is the baseline.
- `usage.commit_latency_p99` (ms, no baseline): `api.requests_counted` produced at a steady
  2,000 events/s for 10 s while the consumer runs; latency is from the producer's send to the commit
  of the batch that counted the event. If the producer cannot keep the offered rate (the load
  generator saturates, not usage), no number is reported.

The bench tenants are on the enterprise plan (no soft limits) and the triggers are set out of reach,
so no `tenant.threshold_crossed` is ever recorded for them; the topics are the bench's own, so no
service consumes them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from events.thresholds import Triggers
from servicekit.platform import PlatformDB
from usage.ingest import AggregatingConsumer
from usage.usecases import UsageService

from bench import Measure

BENCHMARKS = ("usage.aggregate", "usage.commit_latency_p99")

REQUESTS_TOPIC = "bench.usage.requests.v1"
PRODUCTS_TOPIC = "bench.usage.products.v1"
TOPICS = (REQUESTS_TOPIC, PRODUCTS_TOPIC)
# The contract size; smaller while developing (USAGE_BENCH_EVENTS=20000).
EVENTS = int(os.environ.get("USAGE_BENCH_EVENTS", "200000"))
TENANTS = 1_000
RATE = 2_000.0
LATENCY_SECONDS = 10.0
UNREACHABLE = Triggers(products=2**62, requests_per_month=2**62, storage_gb=1e18)


def _say(message: str) -> None:
    print(f"bench: usage: {message}", file=sys.stderr, flush=True)


async def _tenants(tenancy_url: str) -> list[uuid.UUID]:
    """The bench's tenants (made once, kept: the counters only grow, nothing crosses)."""
    connection = await asyncpg.connect(tenancy_url)
    try:
        await connection.executemany(
            "INSERT INTO tenants (name, subdomain, plan) VALUES ($1, $2, 'enterprise') "
            "ON CONFLICT (subdomain) DO NOTHING",
            [(f"bench usage {i}", f"bench-usage-{i}") for i in range(TENANTS)],
        )
        rows = await connection.fetch(
            "SELECT id FROM tenants WHERE subdomain LIKE 'bench-usage-%' ORDER BY subdomain LIMIT $1", TENANTS
        )
    finally:
        await connection.close()
    return [row["id"] for row in rows]


def _event(event_type: str, tenant_id: uuid.UUID, data: dict[str, Any], at: datetime) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "tenant_id": str(tenant_id),
            "occurred_at": at.isoformat(),
            "schema_version": 1,
            "producer": "bench",
            "data": data,
        }
    ).encode()


# As servicekit's RequestCounter numbers them: a few service processes, each one counter with an
# increasing sequence (usage deduplicates by a mark per counter and tenant).
_COUNTERS = [str(uuid.uuid4()) for _ in range(4)]
_SEQUENCES = dict.fromkeys(_COUNTERS, 0)


def _requests(tenant_id: uuid.UUID, at: datetime) -> bytes:
    counter = _COUNTERS[sum(_SEQUENCES.values()) % len(_COUNTERS)]
    _SEQUENCES[counter] += 1
    data = {
        "service": "catalog",
        "count": 3,
        "window_start": at.isoformat(),
        "window_end": (at + timedelta(seconds=1)).isoformat(),
        "counter_id": counter,
        "sequence": _SEQUENCES[counter],
    }
    return _event("api.requests_counted", tenant_id, data, at)


def _product(tenant_id: uuid.UUID, at: datetime) -> bytes:
    data = {"product_id": str(uuid.uuid4()), "name": "p", "sku": None, "price": "1.00", "status": "active"}
    return _event("product.created", tenant_id, data | {"deleted": False, "category_id": None}, at)


def _backlog(tenants: list[uuid.UUID]) -> list[tuple[str, bytes, bytes]]:
    rng = random.Random(9)
    weights = [1.0 / (rank + 1) for rank in range(len(tenants))]
    chosen = rng.choices(tenants, weights=weights, k=EVENTS)
    now = datetime.now(UTC)
    found = []
    for i, tenant_id in enumerate(chosen):
        at = now - timedelta(seconds=rng.randint(0, 3 * 86400))
        if i % 10 == 0:
            found.append((PRODUCTS_TOPIC, str(tenant_id).encode(), _product(tenant_id, at)))
        else:
            found.append((REQUESTS_TOPIC, str(tenant_id).encode(), _requests(tenant_id, at)))
    return found


async def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(t, p) for t in TOPICS for p in sorted(consumer.partitions_for_topic(t) or [])
        ]
        consumer.assign(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return ends


async def _raw_read(
    bootstrap: str, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        wanted = sum(end[tp] - start[tp] for tp in start)
        read = 0
        first: float | None = None
        while read < wanted:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in fetched.values():
                read += len(records)
            if fetched and first is None:
                first = time.perf_counter()
        assert first is not None
        return wanted / (time.perf_counter() - first)
    finally:
        await consumer.stop()


async def _position_group(usage_url: str, group_id: str, at: dict[TopicPartition, int]) -> None:
    """Store the group's offsets at the backlog's start (the topics hold earlier runs too)."""
    connection = await asyncpg.connect(usage_url)
    try:
        await connection.executemany(
            "INSERT INTO usage_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, $4)",
            [(group_id, tp.topic, tp.partition, offset) for tp, offset in at.items()],
        )
    finally:
        await connection.close()


class _Timer:
    def __init__(self, end: dict[TopicPartition, int]) -> None:
        self.end = end
        self.first: float | None = None
        self.done = asyncio.Event()
        self.finished = 0.0
        self.committed: dict[tuple[str, int, int], float] = {}
        self.keep = False
        self._reached: dict[TopicPartition, int] = {}

    def __call__(self, spans: Mapping[TopicPartition, tuple[int, int]]) -> None:
        now = time.perf_counter()
        for tp, (first, last) in spans.items():
            self._reached[tp] = last + 1
            if self.keep:
                for offset in range(first, last + 1):
                    self.committed[(tp.topic, tp.partition, offset)] = now
        if all(self._reached.get(tp, 0) >= offset for tp, offset in self.end.items() if offset > 0):
            self.finished = now
            self.done.set()


def _consumer(
    env: Mapping[str, str], db: PlatformDB, group_id: str, timer: _Timer, fetch_wait_ms: int
) -> AggregatingConsumer:
    service = UsageService(db, triggers=UNREACHABLE, clock=lambda: datetime.now(UTC))
    consumer = AggregatingConsumer(
        service,
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        group_id=group_id,
        topics=TOPICS,
        client_id="bench-usage",
        fetch_wait_ms=fetch_wait_ms,
        on_committed=timer,
    )
    return consumer


async def _aggregate(env: Mapping[str, str], tenants: list[uuid.UUID]) -> Measure:
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    start = await _offsets(bootstrap)
    records = _backlog(tenants)
    began = time.perf_counter()
    await _produce(bootstrap, records)
    end = await _offsets(bootstrap)
    produced = len(records)
    _say(f"produced {produced} events in {time.perf_counter() - began:.1f} s")
    # The backlog's 200,000 tuples out of the measured process: alive, every cycle collection of
    # both readers walked them (a service holds nothing like it).
    del records
    # As the service's process does once it has started (servicekit's freeze_gc): what exists now
    # lives as long as the process, and no cycle collection needs to walk it again. Both readers
    # below run with it.
    gc.collect()
    gc.freeze()

    raw_before = await _raw_read(bootstrap, start, end)
    group_id = f"bench-usage-{uuid.uuid4().hex[:8]}"
    await _position_group(env["USAGE_PLATFORM_DATABASE_URL"], group_id, start)
    db = PlatformDB(env["USAGE_PLATFORM_DATABASE_URL"], application_name="usage:consumers")
    timer = _Timer(end)
    consumer = _consumer(env, db, group_id, timer, fetch_wait_ms=100)
    await consumer.start()
    try:
        await asyncio.wait_for(timer.done.wait(), timeout=900)
    finally:
        await consumer.stop()
        await db.close()
    assert consumer.first_fetch_at is not None
    ours = produced / (timer.finished - consumer.first_fetch_at)
    raw_after = await _raw_read(bootstrap, start, end)
    raw = max(raw_before, raw_after)
    _say(
        f"usage applied {ours:.0f} events/s in {consumer.batches} batches; raw reader "
        f"{raw_before:.0f} / {raw_after:.0f} events/s"
    )
    return Measure("usage.aggregate", round(ours, 1), "events/s", round(raw, 1), round(raw / ours, 3))


async def _latency(env: Mapping[str, str], tenants: list[uuid.UUID]) -> Measure | None:
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    start = await _offsets(bootstrap)
    group_id = f"bench-usage-latency-{uuid.uuid4().hex[:8]}"
    await _position_group(env["USAGE_PLATFORM_DATABASE_URL"], group_id, start)
    db = PlatformDB(env["USAGE_PLATFORM_DATABASE_URL"], application_name="usage:consumers")
    timer = _Timer({})
    timer.keep = True
    consumer = _consumer(env, db, group_id, timer, fetch_wait_ms=20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    await consumer.start()
    sent: dict[tuple[str, int, int], float] = {}
    rng = random.Random(5)
    weights = [1.0 / (rank + 1) for rank in range(len(tenants))]
    try:
        await asyncio.sleep(3)  # the group formed and the partitions sought
        total = int(RATE * LATENCY_SECONDS)
        pending = []

        async def deliver(future: Any, at: float) -> None:
            metadata = await future
            sent[(metadata.topic, metadata.partition, metadata.offset)] = at

        began = time.perf_counter()
        for i in range(total):
            due = began + i / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tenant_id = rng.choices(tenants, weights=weights)[0]
            at = time.perf_counter()
            future = await producer.send(
                REQUESTS_TOPIC, _requests(tenant_id, datetime.now(UTC)), key=str(tenant_id).encode()
            )
            pending.append(asyncio.create_task(deliver(future, at)))
        offered = total / (time.perf_counter() - began)
        await asyncio.gather(*pending)
        for _ in range(1200):  # at most a minute for the last commits
            if all(key in timer.committed for key in sent):
                break
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        await producer.stop()
        await db.close()
    if offered < 0.95 * RATE:
        _say(f"the load generator offered only {offered:.0f} events/s of {RATE:.0f}: no latency reported")
        return None
    latencies = sorted(
        (timer.committed[key] - at) * 1000 for key, at in sent.items() if key in timer.committed
    )
    if len(latencies) < len(sent):
        _say(f"only {len(latencies)} of {len(sent)} events committed within a minute")
        return None
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    p50 = latencies[len(latencies) // 2]
    _say(f"{len(latencies)} events at {offered:.0f}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return Measure("usage.commit_latency_p99", round(p99, 2), "ms")


async def run(selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    from devstack.kafka import ensure_topics

    await ensure_topics(env["KAFKA_BOOTSTRAP_SERVERS"], list(TOPICS))
    tenants = await _tenants(env["TENANCY_PLATFORM_DATABASE_URL"])
    measures: list[Measure] = []
    if "usage.aggregate" in selected:
        measures.append(await _aggregate(env, tenants))
    if "usage.commit_latency_p99" in selected:
        latency = await _latency(env, tenants)
        if latency is not None:
            measures.append(latency)
    return measures
