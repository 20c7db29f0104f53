"""The consumer middleware's decisions (events.dead_letter), driven with stand-ins for FastStream's
message and context: what is redelivered (NackMessage: FastStream seeks the partition back), what is
dead-lettered, and that a failed dead-letter publish is itself redelivered, never acknowledged."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from events.dead_letter import DeadLetter
from faststream.exceptions import NackMessage
from tenantdb import TenantMoving, TenantNotFound

TOPIC = "catalog.products.v1"


@dataclass
class Raw:
    value: bytes
    topic: str = TOPIC
    partition: int = 3
    offset: int = 41
    key: bytes = b"tenant"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Consumer:
    _group_id: str | None = "orders.products"


@dataclass
class Message:
    raw_message: Raw
    consumer: Consumer = field(default_factory=Consumer)


class Broker:
    def __init__(self, *, up: bool = True) -> None:
        self.up = up
        self.published: list[dict[str, Any]] = []

    async def publish(self, body: bytes, *, topic: str, key: bytes, headers: dict[str, str]) -> None:
        if not self.up:
            raise KafkaConnectionError()
        self.published.append({"body": body, "topic": topic, "key": key, "headers": headers})


class Context:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def get(self, name: str) -> Any:
        assert name == "broker"
        return self.broker


def _middleware(broker: Broker, message: Message) -> DeadLetter:
    cls = DeadLetter.configure(attempts=3, backoff=0.001, max_backoff=0.002)
    return cls(message, context=Context(broker))  # type: ignore[arg-type]


def _failing(error: Exception) -> Any:
    async def call_next(msg: Any) -> Any:
        raise error

    return call_next


async def _ok(msg: Any) -> str:
    return "done"


EVENT_ID = str(uuid.uuid4())
BODY = json.dumps({"event_id": EVENT_ID, "event_type": "product.updated"}).encode()


async def test_transient_failures_are_redelivered_for_as_long_as_they_last() -> None:
    broker = Broker()
    message = Message(Raw(BODY))
    middleware = _middleware(broker, message)
    for _ in range(20):  # far more than `attempts`: transient failures never dead-letter
        with pytest.raises(NackMessage):
            await middleware.consume_scope(_failing(TenantMoving(uuid.uuid4(), 5.0)), message)
    assert await middleware.consume_scope(_ok, message) == "done"
    assert broker.published == []


async def test_the_same_error_attempts_times_is_dead_lettered_with_its_headers() -> None:
    broker = Broker()
    message = Message(Raw(BODY))
    middleware = _middleware(broker, message)
    error = TenantNotFound(uuid.uuid4())
    for _ in range(2):
        with pytest.raises(NackMessage):
            await middleware.consume_scope(_failing(error), message)
    assert await middleware.consume_scope(_failing(error), message) is None  # acknowledged: it is in the DLQ
    [letter] = broker.published
    assert letter["topic"] == TOPIC + ".dlq"
    assert (letter["body"], letter["key"]) == (BODY, b"tenant")
    headers = letter["headers"]
    assert headers["x-dlq-error"].startswith("TenantNotFound")
    assert headers["x-dlq-error-kind"] == "error"
    assert headers["x-dlq-original-topic"] == TOPIC
    assert (headers["x-dlq-partition"], headers["x-dlq-offset"]) == ("3", "41")
    assert headers["x-dlq-group"] == "orders.products"
    assert headers["x-dlq-event-id"] == EVENT_ID
    assert headers["x-dlq-attempts"] == "3"


async def test_a_failed_dead_letter_publish_is_redelivered_not_acknowledged() -> None:
    broker = Broker(up=False)
    message = Message(Raw(b"not json"))
    middleware = _middleware(broker, message)
    bad = json.JSONDecodeError("Expecting value", "not json", 0)
    with pytest.raises(NackMessage):  # invalid: straight to the DLQ, which is away
        await middleware.consume_scope(_failing(bad), message)
    broker.up = True
    assert await middleware.consume_scope(_failing(bad), message) is None
    [letter] = broker.published
    assert letter["headers"]["x-dlq-error-kind"] == "invalid"
    assert "x-dlq-event-id" not in letter["headers"]


async def test_group_less_subscribers_are_never_held() -> None:
    broker = Broker()
    message = Message(Raw(BODY), Consumer(_group_id=None))
    middleware = _middleware(broker, message)
    assert await middleware.consume_scope(_failing(RuntimeError("bug")), message) is None
    assert broker.published == []
