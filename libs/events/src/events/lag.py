"""Consumer lag, sampled: how far each group's committed offsets trail the end of its topics.

Each process reports the partitions it holds (its share of the group), so `sum by (group, topic)`
over the pods is the group's lag, with no double counting. No tenant id label.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import TopicPartition
from prometheus_client import Gauge

log = structlog.get_logger("events.lag")

CONSUMER_LAG = Gauge(
    "kafka_consumer_lag_messages",
    "Messages between a group's committed offset and the end of the partitions this process holds",
    ["group", "topic"],
)


async def consumer_lag(consumer: Any) -> dict[str, int]:
    """Per topic, the sum over the consumer's assigned partitions of (end offset - committed)."""
    partitions: list[TopicPartition] = sorted(consumer.assignment())
    if not partitions:
        return {}
    ends = await consumer.end_offsets(partitions)
    beginnings: dict[TopicPartition, int] | None = None
    lag: dict[str, int] = defaultdict(int)
    for tp in partitions:
        committed = await consumer.committed(tp)
        if committed is None:  # a new group: everything retained is still to be read
            if beginnings is None:
                beginnings = await consumer.beginning_offsets(partitions)
            committed = beginnings[tp]
        lag[tp.topic] += max(0, ends[tp] - committed)
    return dict(lag)


async def sample_lag(subscribers: Iterable[Any]) -> None:
    """Set the gauge for every grouped subscriber that has a running consumer (FastStream's
    `broker.subscribers`); one that cannot be asked now keeps its last value."""
    for subscriber in subscribers:
        group = getattr(subscriber, "group_id", None)
        consumer = getattr(subscriber, "consumer", None)
        if group is None or consumer is None:
            continue
        try:
            lags = await consumer_lag(consumer)
        except Exception as error:
            log.debug("consumer lag not sampled", group=group, error=repr(error))
            continue
        for topic in getattr(subscriber, "topic_names", None) or ():
            CONSUMER_LAG.labels(group, topic).set(lags.get(topic, 0))
