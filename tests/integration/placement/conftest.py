"""Fixtures for the automatic placement against the dev stack: migrator apps whose trigger consumers
start at the topics' current end (a fresh pair of consumer groups with committed offsets, so no test
acts on an earlier test's threshold events), trigger events published as usage and tenancy publish
them, and the decisions and migrations read back through the migrator's API."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from events import topics
from migrator.settings import MigratorSettings

from tests.integration.migrator.conftest import migrator_settings
from tests.support.stack_services import stack_service_paused

WAIT_SECONDS = 120.0


@pytest.fixture(scope="package", autouse=True)
def _stack_services_paused(stack_env: dict[str, str]) -> Iterator[None]:
    """The stack's own migrator and usage (CI starts them; the migrator with automatic placement off,
    Makefile) are paused: the stack's runner would race the tests' runners for their queued moves
    (the tests' limits and backoffs are the tests' own), and its usage would publish crossings of the
    tests' tenants beside the tests' usage."""
    with stack_service_paused("migrator"), stack_service_paused("usage"):
        yield


async def placement_groups_at_end(bootstrap: str) -> str:
    """A `placement_group_id` whose two groups (`.thresholds`, `.tenants`) start at the topics' end."""
    group = f"migrator.placement.test-{uuid.uuid4().hex[:12]}"
    for suffix, topic in ((".thresholds", topics.THRESHOLDS), (".tenants", topics.TENANTS)):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group + suffix, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(topics.PARTITIONS)]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
        finally:
            await consumer.stop()
    return group


async def placement_settings(stack_env: dict[str, str], **overrides: Any) -> MigratorSettings:
    group = await placement_groups_at_end(stack_env["KAFKA_BOOTSTRAP_SERVERS"])
    values: dict[str, Any] = {
        "placement_auto_enabled": True,  # off in the migrator tests' settings
        "placement_group_id": group,
        "placement_offset_reset": "latest",
        "placement_cool_down_seconds": 0,
        "migrator_copy_chunk_rows": 2000,
        "migrator_verify_chunk_rows": 2000,
    }
    return migrator_settings(stack_env, **(values | overrides))


def threshold_event(
    tenant_id: uuid.UUID, metric: str, *, event_id: uuid.UUID | None = None, value: int = 10_000
) -> dict[str, Any]:
    """usage's tenant.threshold_crossed, as usage publishes it."""
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "event_type": "tenant.threshold_crossed",
        "tenant_id": str(tenant_id),
        "occurred_at": datetime.now(UTC).isoformat(),
        "schema_version": 1,
        "producer": "usage",
        "data": {"metric": metric, "value": value, "threshold": value, "period": "episode-1"},
    }


async def publish(bootstrap: str, topic: str, events: Iterable[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, json.dumps(event).encode(), key=event["tenant_id"].encode())
    finally:
        await producer.stop()


async def decisions(client: httpx.AsyncClient, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """Oldest first."""
    response = await client.get("/v1/placement/decisions", params={"tenant_id": str(tenant_id), "limit": 200})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


async def migrations(client: httpx.AsyncClient, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """Oldest first."""
    response = await client.get("/v1/migrations", params={"tenant_id": str(tenant_id), "limit": 200})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


async def wait_decisions(
    client: httpx.AsyncClient, tenant_id: uuid.UUID, count: int, *, timeout: float = 60.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := await decisions(client, tenant_id)) < count:
        assert time.monotonic() < deadline, f"{len(found)} decisions of {count} after {timeout}s: {found}"
        await asyncio.sleep(0.1)
    return found


async def wait_migration(
    client: httpx.AsyncClient,
    tenant_id: uuid.UUID,
    statuses: set[str],
    *,
    index: int = -1,
    timeout: float = WAIT_SECONDS,
) -> dict[str, Any]:
    """The tenant's `index`-th migration (oldest first), once it is in one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        found = await migrations(client, tenant_id)
        if (
            found
            and len(found) > (index if index >= 0 else -index - 1)
            and found[index]["status"] in statuses
        ):
            return found[index]
        assert time.monotonic() < deadline, f"no migration {index} in {statuses} after {timeout}s: {found}"
        await asyncio.sleep(0.1)
