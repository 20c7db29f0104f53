"""A backoff for aiokafka's metadata refresh while no broker answers.

With the brokers down, aiokafka's fetcher forces a metadata refresh, every connection attempt fails
at once (connection refused), the refresh fails, and the fetcher forces the next one immediately: a
loop with no pause (aio-libs/aiokafka#496). Measured on this stack with Kafka stopped: 47,050 error
lines ("Unable connect to node", "Unable to update metadata") in 8 s from one idle consumer, a third
of a core, for the whole outage, in every process that consumes (usage's consumer, every FastStream
subscriber).

`install()` makes a failed refresh wait before it returns: the client's `retry_backoff_ms` after the
first failure, doubling with each consecutive one up to `MAX_BACKOFF_SECONDS`, so a broker that comes
back is noticed within that time. A successful refresh resets it. Everything else is aiokafka's.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiokafka.client import AIOKafkaClient

MAX_BACKOFF_SECONDS: Final = 1.0
_ORIGINAL: Final = AIOKafkaClient._metadata_update


async def _metadata_update_with_backoff(self: Any, cluster_metadata: Any, topics: Any) -> bool:
    updated: bool = await _ORIGINAL(self, cluster_metadata, topics)
    if updated:
        self._events_md_failures = 0
        return updated
    failures = getattr(self, "_events_md_failures", 0) + 1
    self._events_md_failures = failures
    first = max(float(getattr(self, "_retry_backoff", 0.1)), 0.01)
    await asyncio.sleep(min(MAX_BACKOFF_SECONDS, first * 2 ** min(failures - 1, 10)))
    return updated


def install() -> None:
    """Idempotent; applies to every aiokafka client in the process."""
    AIOKafkaClient._metadata_update = _metadata_update_with_backoff


def installed() -> bool:
    return AIOKafkaClient._metadata_update is _metadata_update_with_backoff
