"""The request counter with Kafka away: nothing dropped, nothing counted twice, one counter per
tenant (servicekit.counting). A fake broker stands in for Kafka: it fails, or "lands" a publish and
still raises (a timeout after the broker got it)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from servicekit.counting import RequestCounter


class FlakyBroker:
    def __init__(self) -> None:
        self.up = False
        self.land_then_fail = False
        self.landed: list[dict[str, Any]] = []  # what Kafka holds, duplicates included

    async def publish(self, body: bytes, *, topic: str, key: bytes) -> None:
        if self.land_then_fail:
            self.landed.append(json.loads(body))
            raise TimeoutError("acknowledgement not received")
        if not self.up:
            raise ConnectionError("Kafka is down")
        self.landed.append(json.loads(body))


def _counter(broker: FlakyBroker) -> RequestCounter:
    return RequestCounter(broker, service="catalog")  # type: ignore[arg-type]


def _deduplicated_sum(landed: list[dict[str, Any]], tenant: uuid.UUID) -> int:
    """What usage computes: one count per event id."""
    by_id = {e["event_id"]: e["data"]["count"] for e in landed if e["tenant_id"] == str(tenant)}
    return sum(by_id.values())


async def test_windows_merge_while_kafka_is_down_and_go_out_once_it_returns() -> None:
    broker = FlakyBroker()
    counter = _counter(broker)
    a, b = uuid.uuid4(), uuid.uuid4()
    for window in range(50):  # fifty windows with Kafka down
        for _ in range(3):
            counter.add(a)
        if window % 10 == 0:
            counter.add(b)
        await counter.flush()
        # Bounded: per tenant one unconfirmed event and at most one open counter, whatever the windows.
        assert len(counter._unconfirmed) <= 2
        assert len(counter._open) <= 2
    assert counter.pending == 155
    assert broker.landed == []

    broker.up = True
    await counter.flush()  # the events made at the first failed flush, same ids
    await counter.flush()  # the merged rest
    assert counter.pending == 0
    assert _deduplicated_sum(broker.landed, a) == 150
    assert _deduplicated_sum(broker.landed, b) == 5
    a_events = [e for e in broker.landed if e["tenant_id"] == str(a)]
    assert len(a_events) == 2  # not fifty: windows merged into one counter per tenant
    first, merged = a_events
    assert first["data"]["window_end"] <= merged["data"]["window_start"]
    assert merged["data"]["window_start"] < merged["data"]["window_end"]


async def test_a_publish_that_landed_but_timed_out_is_resent_with_the_same_event_id() -> None:
    broker = FlakyBroker()
    counter = _counter(broker)
    tenant = uuid.uuid4()
    for _ in range(7):
        counter.add(tenant)
    broker.land_then_fail = True
    await counter.flush()
    for _ in range(2):  # counted while the first publish is unconfirmed: never merged into it
        counter.add(tenant)
    await counter.flush()
    broker.land_then_fail, broker.up = False, True
    await counter.flush()
    await counter.flush()

    ids = [e["event_id"] for e in broker.landed]
    assert len(ids) == 4
    assert len(set(ids)) == 2
    assert _deduplicated_sum(broker.landed, tenant) == 9
    assert counter.pending == 0


async def test_a_window_is_published_once() -> None:
    broker = FlakyBroker()
    broker.up = True
    counter = _counter(broker)
    tenant = uuid.uuid4()
    counter.add(tenant)
    await counter.flush()
    await counter.flush()
    await counter.flush()
    assert [e["data"]["count"] for e in broker.landed] == [1]
