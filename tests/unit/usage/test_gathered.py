"""The consumer's batch as it gathers fetches: the same exact form whether it tallied or parsed event
by event, refused records kept with their own offset and key, spans from the first fetched offset to
the last, and a tally that says the batch is not fresh when a partition was fetched again (a seek
back after a rebalance)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from usage.ingest import Gathered

REQUESTS = TopicPartition("usage.requests.v1", 3)
ORDERS = TopicPartition("orders.orders.v1", 1)
TENANT = uuid.uuid4()
COUNTER = uuid.uuid4()


def _value(event_type: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "tenant_id": str(TENANT),
            "occurred_at": datetime(2026, 12, 1, 12, tzinfo=UTC).isoformat(),
            "schema_version": 1,
            "producer": "test",
            "data": data,
        }
    ).encode()


def _requests(sequence: int) -> bytes:
    start = datetime(2026, 12, 1, 11, 59, tzinfo=UTC).isoformat()
    data = {"count": 2, "window_start": start, "counter_id": str(COUNTER), "sequence": sequence}
    return _value("api.requests_counted", data)


def _record(tp: TopicPartition, offset: int, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=str(TENANT).encode(),
        value=value,
        checksum=None,
        serialized_key_size=36,
        serialized_value_size=len(value or b""),
        headers=(),
    )


def _fetches() -> list[dict[TopicPartition, list[ConsumerRecord]]]:
    return [
        {
            REQUESTS: [_record(REQUESTS, 10 + i, _requests(i + 1)) for i in range(3)],
            ORDERS: [_record(ORDERS, 7, _value("order.placed", {})), _record(ORDERS, 8, b"{nope")],
        },
        {
            REQUESTS: [
                _record(REQUESTS, 13, _requests(4)),
                _record(REQUESTS, 15, _value("order.status_changed", {})),
            ]
        },
    ]


def _gathered(*, tallying: bool) -> Gathered:
    gathered = Gathered(tallying=tallying)
    for fetched in _fetches():
        asyncio.run(gathered.add(fetched))
    return gathered


def _shape(batch: Any) -> dict[Any, list[tuple[int, Any]]]:
    return {
        partition: [
            (offset, None if e is None else (e.event_type, e.requests, e.sequence)) for offset, e in rows
        ]
        for partition, rows in batch.items()
    }


def test_the_exact_form_is_the_same_whether_the_batch_was_tallied_or_parsed_at_once() -> None:
    tallied, parsed = _gathered(tallying=True), _gathered(tallying=False)
    assert _shape(tallied.exact()) == _shape(parsed.exact())
    assert _shape(tallied.exact())[(REQUESTS.topic, REQUESTS.partition)] == [
        (10, ("api.requests_counted", 2, 1)),
        (11, ("api.requests_counted", 2, 2)),
        (12, ("api.requests_counted", 2, 3)),
        (13, ("api.requests_counted", 2, 4)),
        (15, None),
    ]
    for gathered in (tallied, parsed):
        assert gathered.size == 7
        assert gathered.spans == {REQUESTS: (10, 15), ORDERS: (7, 8)}
        assert [(r.topic, r.offset, r.key) for r, _ in gathered.invalid] == [
            (ORDERS.topic, 8, str(TENANT).encode())
        ]
        assert gathered.ignored == 1
    assert tallied.prepared().tally.regular
    assert not parsed.prepared().tally.regular  # parsed at once: applied event by event


def test_a_partition_fetched_again_after_a_seek_makes_the_tally_irregular() -> None:
    gathered = Gathered(tallying=True)
    first = _fetches()[0]
    asyncio.run(gathered.add(first))
    asyncio.run(gathered.add({REQUESTS: first[REQUESTS]}))  # the same records again
    assert not gathered.prepared().tally.regular
    assert gathered.spans[REQUESTS] == (10, 12)  # the last fetch's last record: read again, deduplicated
