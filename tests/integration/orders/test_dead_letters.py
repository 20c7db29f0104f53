"""A dead letter brought back by the on-call CLI: an event dead-lettered because its tenant did not
exist yet is replayed with the real `tenantctl dlq replay` (a subprocess) once the tenant exists, and
applied once, however often it is replayed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from events import topics
from events.dead_letter import REPLAYED
from events.models import ProductData
from tenantschema.urls import libpq_url, with_database

from tests.integration.orders.conftest import OrdersApp, ProductFeed, product_event, records

TENANTCTL = Path(sys.executable).parent / "tenantctl"


async def tenantctl(kafka: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka}
    return await asyncio.to_thread(
        subprocess.run, [str(TENANTCTL), *args], env=env, capture_output=True, text=True, timeout=120
    )


async def _create_tenant(stack_env: dict[str, str], tenant_id: uuid.UUID) -> None:
    # As the superuser: creating tenants is tenancy's alone, and this test plays tenancy.
    url = libpq_url(with_database(stack_env["ADMIN_DATABASE_URL"], "platform"))
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO tenants (id, name, subdomain) VALUES ($1, $2, $3)",
            tenant_id,
            f"Late {tenant_id.hex[:8]}",
            f"late-{tenant_id.hex}",
        )
    finally:
        await connection.close()


def _handled() -> float:
    return REPLAYED.labels(topics.PRODUCTS, "handled")._value.get()


async def test_a_fixed_dead_letter_is_replayed_by_tenantctl_and_applied_once(
    stack_env: dict[str, str], orders_app: OrdersApp, feed: ProductFeed
) -> None:
    tenant_id = uuid.uuid4()  # no such tenant yet
    event = product_event(tenant_id, price="12.50", name="Early bird")
    event_id = str(event.event_id)
    async with records(orders_app.kafka, topics.dlq(topics.PRODUCTS)) as dead:
        await feed.publish(event)
        # Only this app's letter: the stack's own orders service (make test runs it) dead-letters the
        # same event under its group, and replaying the event id brings both copies back.
        group = orders_app.app.state.settings.products_group_id
        [letter] = await dead.wait_for(
            lambda r: (
                dict(r.headers).get("x-dlq-event-id") == event_id.encode()
                and dict(r.headers).get("x-dlq-group") == group.encode()
            )
        )
    assert dict(letter.headers)["x-dlq-error"].startswith(b"TenantNotFound")

    listed = await tenantctl(orders_app.kafka, "dlq", "list", topics.PRODUCTS, "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [
        e for e in json.loads(listed.stdout)["items"] if e["event_id"] == event_id and e["group"] == group
    ]
    assert entry["event_type"] == "product.updated"
    assert entry["tenant_id"] == str(tenant_id)
    assert entry["error"].startswith("TenantNotFound")
    assert entry["original_topic"] == topics.PRODUCTS
    assert isinstance(entry["original_partition"], int)
    assert isinstance(entry["original_offset"], int)
    assert entry["dead_lettered_at"]

    await _create_tenant(stack_env, tenant_id)  # the cause is fixed
    handled_before = _handled()
    replayed = await tenantctl(
        orders_app.kafka, "dlq", "replay", topics.PRODUCTS, "--event-id", event_id, "--json"
    )
    assert replayed.returncode == 0, replayed.stderr
    copies = json.loads(replayed.stdout)["replayed"]
    assert copies >= 1  # one per consumer group that dead-lettered it
    await feed.wait_applied(event)
    assert await feed.processed(tenant_id) == 1

    # A second replay is harmless: the inbox has the event id, the read model is not touched again.
    again = await tenantctl(orders_app.kafka, "dlq", "replay", topics.PRODUCTS, "--event-id", event_id)
    assert again.returncode == 0, again.stderr
    assert f"replayed {copies} dead letter(s)" in again.stdout
    sentinel = product_event(tenant_id)  # same key, same partition: consumed after the replay
    await feed.publish(sentinel)
    await feed.wait_applied(sentinel)
    assert await feed.processed(tenant_id) == 2  # the event once, the sentinel once
    row: Any = await feed.stored(tenant_id, ProductData.model_validate(event.data).product_id)
    assert (row.name, str(row.price)) == ("Early bird", "12.50")
    assert _handled() - handled_before == 2 * copies  # each replayed copy handled (once applied)


async def test_tenantctl_fails_loudly(orders_app: OrdersApp) -> None:
    missing = await tenantctl(
        orders_app.kafka, "dlq", "replay", topics.PRODUCTS, "--event-id", str(uuid.uuid4())
    )
    assert missing.returncode == 1
    assert "no dead letter with event id" in missing.stderr
    unknown_topic = await tenantctl(orders_app.kafka, "dlq", "list", "no.such.topic")
    assert unknown_topic.returncode == 1
    assert "no topic no.such.topic.dlq" in unknown_topic.stderr
    unreachable = await tenantctl("127.0.0.1:1", "dlq", "list", topics.PRODUCTS)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("tenantctl: error: KafkaConnectionError"), unreachable.stderr
