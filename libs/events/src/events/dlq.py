"""Reading dead-letter topics and putting their messages back (what `tenantctl dlq` runs).

A dead letter is the original message (key and bytes unchanged) with the headers events.dead_letter
wrote. Kafka cannot delete one message, so a dead-letter topic keeps what it got for its retention;
replaying puts copies back on the original topic, marked with `x-dlq-replayed-from`, and the consumers'
inboxes make a second replay of the same event harmless (it is a duplicate, skipped).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from events import dead_letter as headers
from events.topics import DLQ_SUFFIX, dlq

READ_TIMEOUT = 60.0


class DeadLetterTopicMissing(LookupError):
    pass


@dataclass(frozen=True)
class DeadLetterRecord:
    topic: str  # the dead-letter topic
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace") if value is not None else None
        return None

    def _body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.value or b"")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    @property
    def event_id(self) -> str | None:
        found = self.header(headers.EVENT_ID) or self._body().get("event_id")
        return str(found) if found is not None else None

    @property
    def original_topic(self) -> str:
        return self.header(headers.ORIGINAL_TOPIC) or self.topic.removesuffix(DLQ_SUFFIX)

    def as_dict(self) -> dict[str, Any]:
        body = self._body()
        when = (
            self.header(headers.DEAD_LETTERED_AT)
            or datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat()
        )
        partition, offset = self.header(headers.ORIGINAL_PARTITION), self.header(headers.ORIGINAL_OFFSET)
        return {
            "event_id": self.event_id,
            "event_type": body.get("event_type"),
            "tenant_id": body.get("tenant_id") or (self.key.decode("utf-8", "replace") if self.key else None),
            "error": self.header(headers.ERROR),
            "error_kind": self.header(headers.ERROR_KIND),
            "original_topic": self.original_topic,
            "original_partition": int(partition) if partition and partition.isdigit() else None,
            "original_offset": int(offset) if offset and offset.isdigit() else None,
            "group": self.header(headers.GROUP),
            "attempts": self.header(headers.ATTEMPTS),
            "dead_lettered_at": when,
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "replayed_from": self.header(headers.REPLAYED_FROM),
        }


def dlq_topic(topic: str) -> str:
    """`catalog.products.v1` and `catalog.products.v1.dlq` both name the same dead-letter topic."""
    return topic if topic.endswith(DLQ_SUFFIX) else dlq(topic)


async def read_dead_letters(bootstrap_servers: str, topic: str) -> list[DeadLetterRecord]:
    """Every message in the dead-letter topic of `topic` up to its current end, in partition and
    offset order (a tenant's dead letters share a partition, so theirs stay in order)."""
    name = dlq_topic(topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        await consumer.start()
        found = consumer.partitions_for_topic(name)
        if not found:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(name)
        if not found:
            raise DeadLetterTopicMissing(f"no topic {name}")
        partitions = [TopicPartition(name, p) for p in sorted(found)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        # Explicit offsets: seek_to_beginning() races the reset to "latest" that assign() starts, and
        # losing that race reads nothing.
        for tp, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, offset)
        records: list[DeadLetterRecord] = []
        deadline = time.monotonic() + READ_TIMEOUT
        while True:
            remaining = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not remaining:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not read to its end within {READ_TIMEOUT}s")
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, batch in batches.items():
                for record in batch:
                    if record.offset < ends[tp]:
                        records.append(
                            DeadLetterRecord(
                                name,
                                record.partition,
                                record.offset,
                                record.timestamp,
                                record.key,
                                record.value,
                                tuple(record.headers or ()),
                            )
                        )
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        await consumer.stop()


async def replay(
    bootstrap_servers: str, topic: str, *, event_id: str | None = None
) -> list[DeadLetterRecord]:
    """Put the dead letters of `topic` (those of one event with `event_id`) back on their original
    topic, acknowledged by every in-sync replica; returns what was replayed."""
    selected = [
        r
        for r in await read_dead_letters(bootstrap_servers, topic)
        if event_id is None or r.event_id == event_id
    ]
    if not selected:
        return []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True)
    try:
        await producer.start()
        sends = []
        for record in selected:
            kept = [(k, v) for k, v in record.headers if not k.startswith("x-dlq-")]
            kept.append(
                (headers.REPLAYED_FROM, f"{record.topic}:{record.partition}:{record.offset}".encode())
            )
            sends.append(
                await producer.send(record.original_topic, record.value, key=record.key, headers=kept)
            )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return selected
