"""Consumer semantics for every grouped subscriber: nothing lost, nothing stuck, the partition held.

Installed once on a service's broker (`KafkaBroker(..., ack_policy=AckPolicy.ACK,
middlewares=[DeadLetter.configure(...)])`); FastStream has neither retries nor a dead-letter topic
for Kafka. For each message, one of three things happens:

- the handler returned (its transaction committed, or it found the event already in its inbox): the
  offset is committed (AckPolicy.ACK, after the handler);
- the handler failed in a way that passes by itself (connection lost, PostgreSQL restarting,
  serialization failure, deadlock, lock or statement timeout, a tenant at its cutover, a pool timeout:
  events.failures): we wait a backoff (capped at `max_backoff`), then *nack*. FastStream's nack for
  Kafka seeks the partition back to this message's offset, so nothing is committed past it, no later
  message of the partition is applied before it, and the next `getone()` delivers it again. This
  repeats for as long as the failure lasts;
- the message is wrong (unparseable, an invalid envelope or data), or the handler failed the same
  non-transient way `attempts` times: the original bytes go to `<topic>.dlq`, awaited with the broker's
  acks=all producer, with the error, the original topic, partition, offset, group and event id in
  headers; only then is the offset committed, and the consumer goes on. A failed dead-letter publish
  is itself transient: nack, wait, try the message again.

Why redeliver rather than retry inside the handler: aiokafka counts `max_poll_interval_ms` (5 minutes)
from the end of the last `getone()`, and a consumer that exceeds it is kicked out of its group (a
rebalance, and the partition handed to another member mid-retry). Each attempt here is one delivery,
so the wait between two polls is one handler run plus one backoff (at most `max_backoff`), however
long PostgreSQL stays away. The cost: while one partition waits out its backoff, the other partitions
of the same consumer wait too (handling is sequential per subscriber); a database outage stalls them
all anyway.

Attempts are counted per (group, topic, partition, offset) in this process; a rebalance or a restart
starts the count again, which only delays a dead letter. Group-less subscribers (tenantdb's directory
invalidation: every process reads every event, nothing is committed) are not held: a failure there is
logged and counted, and the next event goes on.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import structlog
from faststream import BaseMiddleware
from faststream.exceptions import NackMessage
from prometheus_client import Counter

from events.failures import Failure, classify
from events.topics import DLQ_SUFFIX, dlq

log = structlog.get_logger("events.dead_letter")

DEAD_LETTERED = Counter(
    "kafka_messages_dead_lettered_total", "Messages sent to a dead-letter topic", ["topic"]
)
HANDLER_OUTCOMES = Counter(
    "kafka_handler_outcomes_total",
    "Handled Kafka messages by outcome: applied, duplicate, stale, ignored (the handler's word), "
    "retried_transient, retried_error, dead_lettered, failed_ungrouped",
    ["topic", "outcome"],
)
REPLAYED = Counter(
    "kafka_replayed_messages_total",
    "Messages replayed from a dead-letter topic (tenantctl dlq replay) and handled again, by result",
    ["topic", "result"],
)

# Headers of a dead letter (read back by events.dlq and tenantctl).
ERROR = "x-dlq-error"
ERROR_KIND = "x-dlq-error-kind"
ORIGINAL_TOPIC = "x-dlq-original-topic"
ORIGINAL_PARTITION = "x-dlq-partition"
ORIGINAL_OFFSET = "x-dlq-offset"
GROUP = "x-dlq-group"
EVENT_ID = "x-dlq-event-id"
ATTEMPTS = "x-dlq-attempts"
DEAD_LETTERED_AT = "x-dlq-at"
# Set on a message put back on its topic by a replay: "<dlq topic>:<partition>:<offset>".
REPLAYED_FROM = "x-dlq-replayed-from"

_MAX_TRACKED = 4096


def count_outcome(topic: str, outcome: str) -> None:
    """What a handler did with a message it returned from ("applied", "duplicate", ...)."""
    HANDLER_OUTCOMES.labels(topic, outcome).inc()


def event_id_of(value: bytes | None) -> str | None:
    """The envelope's event id, if the bytes are a JSON object carrying one (best effort)."""
    if not value:
        return None
    try:
        body = json.loads(value)
    except ValueError:
        return None
    event_id = body.get("event_id") if isinstance(body, dict) else None
    return str(event_id)[:100] if event_id is not None else None


@dataclass
class _Failing:
    errors: int = 0  # consecutive non-transient failures of the same kind
    transient: int = 0
    error_type: str = ""
    since: float = 0.0


class DeadLetter(BaseMiddleware):
    attempts: ClassVar[int] = 5
    backoff: ClassVar[float] = 0.2
    max_backoff: ClassVar[float] = 5.0
    _failing: ClassVar[dict[tuple[str, str, int, int], _Failing]] = {}

    @classmethod
    def configure(
        cls, *, attempts: int = 5, backoff: float = 0.2, max_backoff: float = 5.0
    ) -> type[DeadLetter]:
        """A middleware class with its own settings and its own attempt counts (one per broker)."""
        namespace = {"attempts": attempts, "backoff": backoff, "max_backoff": max_backoff, "_failing": {}}
        return type("DeadLetter", (cls,), namespace)

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        raw = msg.raw_message
        topic = getattr(raw, "topic", None)
        if topic is None or topic.endswith(DLQ_SUFFIX):  # a batch, or a dead-letter reader
            return await call_next(msg)
        group = getattr(getattr(msg, "consumer", None), "_group_id", None)
        if group is None:
            return await self._ungrouped(call_next, msg, topic)

        key = (group, topic, raw.partition, raw.offset)
        try:
            result = await call_next(msg)
        except Exception as error:
            return await self._failed(msg, raw, key, error)
        self._failing.pop(key, None)
        if _replayed_from(raw) is not None:
            REPLAYED.labels(topic, "handled").inc()
        return result

    async def _ungrouped(self, call_next: Any, msg: Any, topic: str) -> Any:
        try:
            return await call_next(msg)
        except Exception as error:
            HANDLER_OUTCOMES.labels(topic, "failed_ungrouped").inc()
            log.error(
                "handler of a group-less subscriber failed; event skipped",
                topic=topic,
                event_id=event_id_of(msg.raw_message.value),
                error=repr(error),
            )
            return None

    async def _failed(self, msg: Any, raw: Any, key: tuple[str, str, int, int], error: Exception) -> Any:
        group, topic, partition, offset = key
        failing = self._failing.get(key)
        if failing is None:
            failing = self._failing[key] = _Failing(since=time.monotonic())
            while len(self._failing) > _MAX_TRACKED:  # partitions revoked mid-retry leave entries
                del self._failing[next(iter(self._failing))]
        kind = classify(error)
        context = {
            "topic": topic,
            "group": group,
            "partition": partition,
            "offset": offset,
            "event_id": event_id_of(raw.value),
            "error": repr(error)[:500],
        }
        if kind is Failure.TRANSIENT:
            failing.transient += 1
            HANDLER_OUTCOMES.labels(topic, "retried_transient").inc()
            await self._hold(failing.transient, "transient failure; partition held, will redeliver", context)
        if kind is Failure.ERROR:
            error_type = type(error).__name__
            failing.errors = failing.errors + 1 if failing.error_type == error_type else 1
            failing.error_type = error_type
            if failing.errors < self.attempts:
                HANDLER_OUTCOMES.labels(topic, "retried_error").inc()
                await self._hold(failing.errors, "handler failed; will redeliver", context)
        attempts = failing.errors + failing.transient + (1 if kind is Failure.INVALID else 0)
        try:
            await self._dead_letter(msg, raw, key, error, kind, attempts)
        except Exception as publish_error:
            failing.transient += 1
            context["error"] = repr(publish_error)[:500]
            await self._hold(failing.transient, "dead-letter publish failed; will redeliver", context)
        self._failing.pop(key, None)
        return None

    async def _hold(self, attempt: int, message: str, context: dict[str, Any]) -> None:
        """Wait a backoff, then seek the partition back to this message (raises NackMessage)."""
        delay = min(self.max_backoff, self.backoff * 2 ** min(attempt - 1, 16))
        delay *= random.uniform(0.8, 1.2)
        log.warning(message, attempt=attempt, retry_in_seconds=round(delay, 3), **context)
        await asyncio.sleep(delay)
        raise NackMessage()

    async def _dead_letter(
        self,
        msg: Any,
        raw: Any,
        key: tuple[str, str, int, int],
        error: Exception,
        kind: Failure,
        attempts: int,
    ) -> None:
        group, topic, partition, offset = key
        broker = self.context.get("broker")
        event_id = event_id_of(raw.value)
        headers = {
            ERROR: f"{type(error).__name__}: {error}"[:1000],
            ERROR_KIND: kind.value,
            ORIGINAL_TOPIC: topic,
            ORIGINAL_PARTITION: str(partition),
            ORIGINAL_OFFSET: str(offset),
            GROUP: group,
            ATTEMPTS: str(attempts),
            DEAD_LETTERED_AT: datetime.now(UTC).isoformat(),
        }
        if event_id is not None:
            headers[EVENT_ID] = event_id
        # Awaited: the broker's producer is acks=all and idempotent, so once this returns the dead
        # letter is on every in-sync replica, and committing the offset loses nothing.
        await broker.publish(raw.value, topic=dlq(topic), key=raw.key, headers=headers)
        DEAD_LETTERED.labels(topic).inc()
        HANDLER_OUTCOMES.labels(topic, "dead_lettered").inc()
        if _replayed_from(raw) is not None:
            REPLAYED.labels(topic, "dead_lettered").inc()
        log.error(
            "message dead-lettered",
            dlq=dlq(topic),
            attempts=attempts,
            kind=kind.value,
            **{
                "topic": topic,
                "group": group,
                "partition": partition,
                "offset": offset,
                "event_id": event_id,
                "error": headers[ERROR],
            },
        )


def _replayed_from(raw: Any) -> str | None:
    for name, value in getattr(raw, "headers", None) or ():
        if name == REPLAYED_FROM:
            return bytes(value).decode("utf-8", "replace") if value is not None else ""
    return None
