"""Watch a topic from "now": a consumer whose partitions are assigned and positioned at the end before
the test acts, collecting every envelope that arrives after. Wait with a deadline, never a sleep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


@dataclass
class Seen:
    messages: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, bytes]] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, count: int = 1, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            matching = [m for m in self.messages if predicate(m)]
            if len(matching) >= count:
                return matching
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(matching)} of {count} expected messages within {timeout}s")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def tail(
    bootstrap: str, topic: str, on_record: Callable[[ConsumerRecord[bytes, bytes]], None]
) -> AsyncIterator[None]:
    """Hand every record arriving on `topic` after entry to `on_record`: the partitions are assigned
    and positioned at their ends before the body runs, so nothing the test causes is missed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        if not consumer.partitions_for_topic(topic):
            await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve the end offsets now, before the test acts

        async def pump() -> None:
            async for record in consumer:
                on_record(record)

        task = asyncio.create_task(pump())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await consumer.stop()


@asynccontextmanager
async def watch(bootstrap: str, topic: str) -> AsyncIterator[Seen]:
    """Every envelope arriving on `topic` from now on, parsed, with its key and headers."""
    seen = Seen()

    def keep(record: ConsumerRecord[bytes, bytes]) -> None:
        seen.raw.append(record.value)
        seen.keys.append(record.key)
        seen.headers.append({k: v for k, v in record.headers})
        try:
            seen.messages.append(json.loads(record.value))
        except ValueError:
            seen.messages.append({"_unparseable": record.value})

    async with tail(bootstrap, topic, keep):
        yield seen
