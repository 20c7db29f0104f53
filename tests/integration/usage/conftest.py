"""Fixtures for usage against the dev stack: events published straight to the contract's topics
(what the services' relays and request counters publish), usage apps in-process or as processes,
each with a consumer group of its own, and the platform database read back as usage's role.

Counting is global (event ids are deduplicated across groups, usage_seen_events), so an app of one
test never counts another test's events twice; tests use fresh tenants and compare their counts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from events import topics
from fastapi import FastAPI
from usage.app import create_app
from usage.consumers import CONSUMED
from usage.domain import Clock, utc_now
from usage.settings import UsageSettings

from tests.integration.tenantdb.conftest import create_tenant, dedicated_secret
from tests.support.apps import serve
from tests.support.databases import role_settings, role_url
from tests.support.relay import relay_settings
from tests.support.stack_services import stack_service_paused


@pytest.fixture(scope="package", autouse=True)
def _stack_usage_paused(stack_env: dict[str, str]) -> Iterator[None]:
    """The stack's own usage service (when `make up` started it: CI) is paused while these tests run.
    Counting stays exact with it running (event ids are deduplicated across groups), but it would
    race the tests' apps to apply their events with its own triggers and clock (the tests lower the
    triggers and move the clock). SIGSTOP/SIGCONT: paused, not ended; it catches up afterwards."""
    with stack_service_paused("usage"):
        yield


def usage_settings(stack_env: dict[str, str], **overrides: Any) -> UsageSettings:
    values: dict[str, Any] = {
        **role_settings(stack_env, "usage"),
        "kafka_bootstrap_servers": stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        "dedicated_password_secret": dedicated_secret(),
        "usage_group_id": f"usage-test-{uuid.uuid4().hex[:12]}",
        "reconcile_interval_seconds": 3600.0,
        **relay_settings(stack_env),
    }
    return UsageSettings(**(values | overrides))


Offsets = dict[tuple[str, int], int]


async def start_group_at(stack_env: dict[str, str], group_id: str, offsets: Offsets) -> None:
    """Store the group's offsets as if it had applied everything before `offsets` (what the topics
    held when the test began): a group of one test does not read every earlier test's events."""
    connection = await asyncpg.connect(role_url(stack_env, "usage"))
    try:
        await connection.executemany(
            "INSERT INTO usage_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, $4)",
            [(group_id, topic, partition, offset) for (topic, partition), offset in offsets.items()],
        )
    finally:
        await connection.close()


@asynccontextmanager
async def usage_app(
    stack_env: dict[str, str], *, clock: Clock = utc_now, start_at: Offsets | None = None, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """`start_at`: the topics' offsets to start from (`await end_offsets(...)` taken before the test
    published); None reads them from the beginning (a replay of everything)."""
    settings = usage_settings(stack_env, **overrides)
    if start_at is not None:
        await start_group_at(stack_env, settings.usage_group_id, start_at)
    app = create_app(settings, clock=clock)
    async with serve(app) as client:
        yield app, client


def envelope(
    event_type: str,
    tenant_id: uuid.UUID,
    data: dict[str, Any],
    *,
    occurred_at: datetime | None = None,
    producer: str = "test",
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "tenant_id": str(tenant_id),
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        "schema_version": 1,
        "producer": producer,
        "data": data,
    }


def requests_counted(
    tenant_id: uuid.UUID, count: int, start: datetime, *, counter: uuid.UUID | None = None, sequence: int = 0
) -> dict[str, Any]:
    """As servicekit's RequestCounter sends it: numbered when `counter` is given (its process's id and
    the tenant's next sequence), else as a producer that does not number its counts."""
    data: dict[str, Any] = {
        "service": "catalog",
        "count": count,
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(seconds=1)).isoformat(),
    }
    if counter is not None:
        data |= {"counter_id": str(counter), "sequence": sequence}
    return envelope("api.requests_counted", tenant_id, data, occurred_at=start + timedelta(seconds=1))


def product_event(event_type: str, tenant_id: uuid.UUID, at: datetime | None = None) -> dict[str, Any]:
    at = at or datetime.now(UTC)
    data = {
        "product_id": str(uuid.uuid4()),
        "name": "p",
        "sku": None,
        "price": "1.00",
        "status": "active",
        "deleted": event_type == "product.deleted",
        "category_id": None,
        "updated_at": at.isoformat(),
    }
    return envelope(event_type, tenant_id, data, occurred_at=at)


def order_placed(tenant_id: uuid.UUID, at: datetime) -> dict[str, Any]:
    return envelope("order.placed", tenant_id, {"order_id": str(uuid.uuid4())}, occurred_at=at)


TOPIC_OF = {
    "api.requests_counted": topics.REQUESTS,
    "product.created": topics.PRODUCTS,
    "product.deleted": topics.PRODUCTS,
    "order.placed": topics.ORDERS,
    "tenant.created": topics.TENANTS,
    "tenant.updated": topics.TENANTS,
    "tenant.plan_changed": topics.TENANTS,
}


class FakeClock:
    """An injectable clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def wait_until(predicate: Any, what: str, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


async def publish(
    bootstrap: str, events: Iterable[dict[str, Any]], *, raw: Iterable[tuple[str, bytes]] = ()
) -> None:
    """Keyed by tenant id, as the relays publish; `raw`: (topic, bytes) sent as they are."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for event in events:
            futures.append(
                await producer.send(
                    TOPIC_OF[event["event_type"]],
                    json.dumps(event).encode(),
                    key=event["tenant_id"].encode(),
                )
            )
        for topic, value in raw:
            futures.append(await producer.send(topic, value, key=b"not-a-tenant"))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, names: Iterable[str] = CONSUMED) -> Offsets:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, p)
            for topic in names
            for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


async def wait_consumed(stack_env: dict[str, str], group_id: str, *, timeout: float = 90.0) -> None:
    """Until the group's stored offsets reach what the topics held when this was called: everything
    published before is applied (its transaction committed)."""
    ends = await end_offsets(stack_env["KAFKA_BOOTSTRAP_SERVERS"])
    wanted = {key: end for key, end in ends.items() if end > 0}
    deadline = time.monotonic() + timeout
    connection = await asyncpg.connect(role_url(stack_env, "usage"))
    try:
        while True:
            rows = await connection.fetch(
                "SELECT topic, partition, next_offset FROM usage_offsets WHERE group_id = $1", group_id
            )
            stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
            behind = {k: (stored.get(k), end) for k, end in wanted.items() if stored.get(k, -1) < end}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group_id} not caught up within {timeout}s: {behind}")
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


@dataclass
class Counts:
    daily: dict[date, tuple[int, int, int]]  # requests, products created, orders
    monthly: dict[date, int]
    product_count: int
    monthly_requests: int


async def counts_of(stack_env: dict[str, str], tenant_id: uuid.UUID) -> Counts:
    connection = await asyncpg.connect(role_url(stack_env, "usage"))
    try:
        daily = await connection.fetch(
            "SELECT metric_date, requests_count, products_count, orders_count FROM tenant_usage_metrics "
            "WHERE tenant_id = $1",
            tenant_id,
        )
        monthly = await connection.fetch(
            "SELECT month, requests_count FROM usage_monthly WHERE tenant_id = $1", tenant_id
        )
        tenant = await connection.fetchrow(
            "SELECT product_count, monthly_requests FROM tenants WHERE id = $1", tenant_id
        )
    finally:
        await connection.close()
    return Counts(
        daily={
            r["metric_date"]: (r["requests_count"], r["products_count"], r["orders_count"])
            for r in daily
            if (r["requests_count"], r["products_count"], r["orders_count"]) != (0, 0, 0)
        },
        monthly={r["month"]: r["requests_count"] for r in monthly},
        product_count=tenant["product_count"],
        monthly_requests=tenant["monthly_requests"],
    )


async def crossings_of(stack_env: dict[str, str], tenant_id: uuid.UUID) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(role_url(stack_env, "usage"))
    try:
        return list(
            await connection.fetch(
                "SELECT metric, period, value, threshold, event_id, resolved_at FROM usage_thresholds "
                "WHERE tenant_id = $1 ORDER BY crossed_at, metric, period",
                tenant_id,
            )
        )
    finally:
        await connection.close()


async def new_tenants(stack_env: dict[str, str], n: int) -> list[uuid.UUID]:
    url = role_url(stack_env, "tenancy")
    return [await create_tenant(url) for _ in range(n)]
