"""events.raw_records: a consumer that asks for raw records gets aiokafka's decoded records, with the
offsets, keys and values a ConsumerRecord would carry; every other consumer still gets ConsumerRecords."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from events import raw_records

pytestmark = pytest.mark.unit

TP = TopicPartition("t", 0)


def _batches(first_offset: int, count: int) -> bytes:
    """Two record batches in Kafka's v2 format, offsets first_offset.. (keys and values numbered; one
    record without a key, one without a value)."""
    out = bytearray()
    offset = first_offset
    for size in (count // 2, count - count // 2):
        base = offset
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        for _ in range(size):
            key = None if offset == first_offset + 1 else f"k{offset}".encode()
            value = None if offset == first_offset + 2 else f'{{"n": {offset}}}'.encode()
            builder.append(offset - base, timestamp=None, key=key, value=value, headers=[])
            offset += 1
        buffer = builder.build()
        # The base offset is the batch's first 8 bytes.
        buffer[0:8] = base.to_bytes(8, "big")
        out += buffer
    return bytes(out)


def _records(data: bytes, deserializer: object, fetch_offset: int) -> list[object]:
    partition = fetcher.PartitionRecords(
        TP, MemoryRecords(data), [], fetch_offset, None, deserializer, True, 0
    )
    return list(partition)


def test_installed_for_the_locked_aiokafka() -> None:
    assert raw_records.INSTALLED, "aiokafka changed: check events.raw_records against its fetcher"


def test_raw_records_carry_what_consumer_records_carry() -> None:
    data = _batches(100, 10)
    plain = _records(data, None, 100)
    raw = _records(data, raw_records.raw_values, 100)
    assert all(type(r) is ConsumerRecord for r in plain)
    assert not any(type(r) is ConsumerRecord for r in raw)
    seen = [(r.offset, r.key, r.value) for r in raw]  # type: ignore[attr-defined]
    assert seen == [(r.offset, r.key, r.value) for r in plain]  # type: ignore[attr-defined]
    assert [offset for offset, _, _ in seen] == list(range(100, 110))
    assert seen[1][1] is None
    assert seen[2][2] is None


def test_records_below_the_fetch_offset_are_still_skipped() -> None:
    """aiokafka's own position logic stays: a batch fetched from before the position yields only
    what is at or after it."""
    raw = _records(_batches(100, 10), raw_records.raw_values, 104)
    assert [r.offset for r in raw] == list(range(104, 110))  # type: ignore[attr-defined]


def test_the_marker_is_the_identity_where_raw_records_are_not_installed() -> None:
    assert raw_records.raw_values(b"x") == b"x"
    assert raw_records.raw_values(None) is None


class _Assignment:
    """What FetchResult asks of an assignment: active, and each partition's position."""

    class _State:
        paused = False

        def __init__(self, position: int) -> None:
            self.position = position

        def consumed_to(self, position: int) -> None:
            self.position = position

    def __init__(self, position: int) -> None:
        self.active = True
        self.state = self._State(position)

    def state_value(self, tp: TopicPartition) -> _State:
        return self.state


def _drain(
    data: bytes, deserializer: object, fetch_offset: int, max_records: int
) -> list[tuple[list[int], int]]:
    """getall(max_records) until the fetch is used up: the offsets of each call and the position after."""
    assignment = _Assignment(fetch_offset)
    partition = fetcher.PartitionRecords(
        TP, MemoryRecords(data), [], fetch_offset, None, deserializer, True, 0
    )
    result = fetcher.FetchResult(TP, assignment=assignment, partition_records=partition, backoff=0)
    calls = []
    while result.has_more():
        records = result.getall(max_records)
        calls.append(([r.offset for r in records], assignment.state.position))
    return calls


@pytest.mark.parametrize("max_records", [1, 3, 5, 7, 10, 50])
@pytest.mark.parametrize("fetch_offset", [100, 103, 105])
def test_bulk_takes_return_and_position_as_aiokafka_does(max_records: int, fetch_offset: int) -> None:
    """Batches taken whole where they fit, split where `max_records` ends inside one: the same records
    per call, and the same consumer position after each, as aiokafka's record-by-record path."""
    data = _batches(100, 11)
    raw = _drain(data, raw_records.raw_values, fetch_offset, max_records)
    plain = _drain(data, None, fetch_offset, max_records)
    assert [offsets for offsets, _ in raw if offsets] == [offsets for offsets, _ in plain if offsets]
    assert [position for offsets, position in raw if offsets] == [p for offsets, p in plain if offsets]
    assert [offset for offsets, _ in raw for offset in offsets] == list(range(fetch_offset, 111))
    assert raw[-1][1] == plain[-1][1] == 111
