"""Retries with backoff, then the dead-letter topic: FastStream has neither for Kafka.

Installed once on a service's broker (`KafkaBroker(..., middlewares=[DeadLetter.configure(...)])`).
A handler that raises is retried in place, with exponential backoff, a few times; then the original
bytes go to `<topic>.dlq` with the error in headers, and the consumer goes on (the offset is committed
after the handler returns: AckPolicy.ACK). A message that cannot be parsed fails on every attempt
and takes the same path. Keep handlers short: retries count against `max_poll_interval_ms`.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import structlog
from faststream import BaseMiddleware
from prometheus_client import Counter

from events.topics import dlq

log = structlog.get_logger("events.dead_letter")

DEAD_LETTERED = Counter(
    "kafka_messages_dead_lettered_total", "Messages sent to a dead-letter topic", ["topic"]
)
HANDLER_RETRIES = Counter(
    "kafka_handler_retries_total", "Handler attempts that failed and were retried", ["topic"]
)


class DeadLetter(BaseMiddleware):
    attempts: ClassVar[int] = 3
    backoff: ClassVar[float] = 0.2

    @classmethod
    def configure(cls, *, attempts: int = 3, backoff: float = 0.2) -> type[DeadLetter]:
        return type("DeadLetter", (cls,), {"attempts": attempts, "backoff": backoff})

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        raw = msg.raw_message
        topic = getattr(raw, "topic", None)
        if topic is None or topic.endswith(".dlq"):
            return await call_next(msg)
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return await call_next(msg)
            except Exception as error:
                if attempt == self.attempts:
                    await self._dead_letter(msg, raw, topic, error, attempt)
                    return None
                HANDLER_RETRIES.labels(topic).inc()
                log.warning("handler failed; retrying", topic=topic, attempt=attempt, error=repr(error))
                await asyncio.sleep(delay)
                delay *= 2
        return None

    async def _dead_letter(self, msg: Any, raw: Any, topic: str, error: Exception, attempts: int) -> None:
        broker = self.context.get("broker")
        headers = {
            "x-dlq-error": f"{type(error).__name__}: {error}"[:1000],
            "x-dlq-original-topic": topic,
            "x-dlq-partition": str(getattr(raw, "partition", "")),
            "x-dlq-offset": str(getattr(raw, "offset", "")),
            "x-dlq-attempts": str(attempts),
        }
        await broker.publish(msg.body, topic=dlq(topic), key=getattr(raw, "key", None), headers=headers)
        DEAD_LETTERED.labels(topic).inc()
        log.error("message dead-lettered", topic=topic, dlq=dlq(topic), error=headers["x-dlq-error"])
