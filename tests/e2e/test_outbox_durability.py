"""The transactional outbox: nothing is lost when Kafka is away or a process dies after commit."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.engine import make_url
from tenancy.app import create_app
from tenantschema import migrations
from tenantschema.urls import libpq_url, with_database

from tests.integration.tenancy.conftest import tenancy_settings
from tests.support.apps import serve
from tests.support.databases import FreshDatabase, role_url
from tests.support.kafka import watch
from tests.support.processes import ServiceProcess, devstack, isolated_kafka

pytestmark = pytest.mark.slow


async def _outbox_state(admin_url: str, tenant_id: str, database: str = "platform") -> list[str]:
    conn = await asyncpg.connect(libpq_url(with_database(admin_url, database)))
    try:
        rows = await conn.fetch("SELECT state FROM outbox WHERE tenant_id = $1", uuid.UUID(tenant_id))
    finally:
        await conn.close()
    return [r["state"] for r in rows]


async def test_event_committed_by_a_killed_process_is_still_published(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL right after the commit: the event is in the outbox, and a relay (the restarted
    process's, or another replica's: the stack runs one too) publishes it."""
    async with watch(stack_env["KAFKA_BOOTSTRAP_SERVERS"], "tenancy.tenants.v1") as seen:
        # The first process cannot publish anything itself (its relay is off), then dies hard.
        first = ServiceProcess(
            "tenancy", stack_env | {"OUTBOX_RELAY_ENABLED": "false"}, tmp_path / "first.log"
        )
        try:
            await first.wait_ready()
            async with httpx.AsyncClient(base_url=first.url) as client:
                response = await client.post(
                    "/v1/tenants", json={"name": "Crash", "subdomain": f"c-{uuid.uuid4().hex[:12]}"}
                )
            assert response.status_code == 201
            tenant_id = response.json()["id"]
        finally:
            first.kill()
        assert len(await _outbox_state(stack_env["ADMIN_DATABASE_URL"], tenant_id)) == 1

        second = ServiceProcess("tenancy", stack_env, tmp_path / "second.log")
        try:
            await second.wait_ready()
            [event] = await seen.wait_for(lambda m: m["tenant_id"] == tenant_id)
        finally:
            second.stop()
    assert event["event_type"] == "tenant.created"
    assert await _outbox_state(stack_env["ADMIN_DATABASE_URL"], tenant_id) == ["published"]


async def _read_all(
    bootstrap: str, topic: str, tenant_ids: set[str], expected: int
) -> list[dict[str, object]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    message = json.loads(record.value)
                    if message["tenant_id"] in tenant_ids:
                        found.append(message)
            if len({m["event_id"] for m in found}) >= expected:
                # Give duplicates, if any, a moment to show up too.
                await asyncio.sleep(1)
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [
                        json.loads(r.value) for r in records if json.loads(r.value)["tenant_id"] in tenant_ids
                    ]
                return found
    finally:
        await consumer.stop()
    return found


async def test_writes_while_kafka_is_down_all_arrive_when_it_is_back(
    stack_env: dict[str, str], tmp_path: Path, fresh_database: FreshDatabase
) -> None:
    # A platform database of its own: the stack's running tenancy would otherwise relay these rows
    # to the stack's Kafka, which stays up.
    owner_url = await fresh_database()
    await migrations.upgrade_async(owner_url, "platform")
    database = make_url(owner_url).database
    assert database is not None
    platform_url = libpq_url(with_database(role_url(stack_env, "tenancy"), database))
    relay_url = libpq_url(with_database(stack_env["RELAY_PLATFORM_DATABASE_URL"], database))
    with isolated_kafka(stack_env, tmp_path / "kafka") as kafka_env:
        bootstrap = f"127.0.0.1:{kafka_env['DEVSTACK_KAFKA_PORT']}"
        app = create_app(
            tenancy_settings(
                stack_env,
                kafka_bootstrap_servers=bootstrap,
                platform_database_url=platform_url,
                relay_platform_database_url=relay_url,
            )
        )
        async with serve(app) as client:
            devstack("down", kafka_env)  # Kafka goes away
            made: set[str] = set()
            for i in range(5):
                response = await client.post(
                    "/v1/tenants", json={"name": f"Outage {i}", "subdomain": f"o-{uuid.uuid4().hex[:12]}"}
                )
                assert response.status_code == 201  # writes do not need Kafka
                made.add(response.json()["id"])
            ready = await client.get("/readyz")
            # Still ready (CONTRACT.md §1: Kafka away alone never makes it 503), Kafka reported down.
            assert ready.status_code == 200
            assert ready.json()["checks"]["database"] == "ok"
            assert ready.json()["checks"]["kafka"] != "ok"
            for tenant_id in made:
                assert await _outbox_state(stack_env["ADMIN_DATABASE_URL"], tenant_id, database) != [
                    "published"
                ]

            devstack("up", kafka_env)  # and comes back, same data
            events = await _read_all(bootstrap, "tenancy.tenants.v1", made, expected=len(made))
    assert {(e["tenant_id"], e["event_type"]) for e in events} == {(t, "tenant.created") for t in made}
    assert len({e["event_id"] for e in events}) == len(made)  # duplicates (at least once) share an id
