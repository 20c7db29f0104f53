"""A move under continuous load through the real services' HTTP APIs (catalog and orders running as
processes, each as its own role): writers create and update products and place orders, a reader
reads, during the whole move. Then: zero failed requests, every acknowledged write is in the
tenant's new database, order numbers continue without a gap or repeat, every answer about data that
did not change is the same before and after, the tenant's product events on Kafka are complete and in
order across the cutover. The longest gap between two successful writes (the freeze) is reported."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from events import topics

from tests.integration.migrator.conftest import checksums, directory, wait_for
from tests.integration.orders.conftest import fresh_group_at_end
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret
from tests.support.kafka import tail
from tests.support.processes import ServiceProcess

TENANT_HEADER = "X-Tenant-ID"
LOAD_AFTER_SECONDS = 1.5


@dataclass
class History:
    """Every client operation with its outcome (a Jepsen-style history, checked after the run)."""

    failures: list[str] = field(default_factory=list)
    write_times: list[float] = field(default_factory=list)
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, str] = field(default_factory=dict)
    order_numbers: list[str] = field(default_factory=list)
    reads: int = 0

    def failed(self, what: str, response: httpx.Response) -> None:
        self.failures.append(f"{what}: {response.status_code} {response.text[:200]}")


@pytest.fixture(scope="module")
async def services(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("services")
    # orders' product read model through a group of its own, at the topic's end (no backlog).
    group = await fresh_group_at_end(stack_env["KAFKA_BOOTSTRAP_SERVERS"], topics.PRODUCTS)
    env = {
        **stack_env,
        "DEDICATED_PASSWORD_SECRET": dedicated_secret(),
        "LOG_LEVEL": "WARNING",
        "PRODUCTS_GROUP_ID": group,
    }
    started: list[ServiceProcess] = []
    try:
        for name in ("catalog", "orders", "migrator"):
            extra = {
                "MIGRATOR_CLEANUP_DELAY_SECONDS": "1",
                "MIGRATOR_POLL_INTERVAL_SECONDS": "0.2",
                "PLACEMENT_AUTO_ENABLED": "false",  # only the test's own move
            }
            process = ServiceProcess(
                name, {**env, **(extra if name == "migrator" else {})}, logs / f"{name}.log"
            )
            started.append(process)
        for process in started:
            await process.wait_ready()
        yield {"catalog": started[0].url, "orders": started[1].url, "migrator": started[2].url}
    finally:
        for process in started:
            process.stop()


async def _place_order(orders: httpx.AsyncClient, product_id: str, key: str) -> httpx.Response:
    return await orders.post(
        "/v1/orders",
        json={"customer_email": "buyer@example.com", "items": [{"product_id": product_id, "quantity": 1}]},
        headers={"Idempotency-Key": key},
    )


async def test_a_move_under_load_fails_no_request_and_loses_no_write(
    stack_env: dict[str, str], make_tenant: MakeTenant, services: dict[str, str]
) -> None:
    tenant_id = await make_tenant("shared")
    headers = {TENANT_HEADER: str(tenant_id)}
    history = History()
    events: list[dict[str, Any]] = []

    def keep(record: ConsumerRecord[bytes, bytes]) -> None:
        value = json.loads(record.value)
        if value.get("tenant_id") == str(tenant_id):
            events.append(value)

    async with (
        httpx.AsyncClient(base_url=services["catalog"], headers=headers, timeout=30) as catalog,
        httpx.AsyncClient(base_url=services["orders"], headers=headers, timeout=30) as orders,
        httpx.AsyncClient(base_url=services["migrator"], timeout=30) as migrator,
        tail(stack_env["KAFKA_BOOTSTRAP_SERVERS"], topics.PRODUCTS, keep),
    ):
        # Before: a category, products, a customer, orders (the orders' read model fed by events).
        category = (await catalog.post("/v1/categories", json={"name": "Bikes", "slug": "bikes"})).json()
        for i in range(10):
            made = await catalog.post(
                "/v1/products",
                json={
                    "name": f"Bike {i}",
                    "price": f"{100 + i}.50",
                    "sku": f"B-{i}",
                    "status": "active",
                    "category_id": category["id"],
                    "attributes": {"wheels": [26, 27.5], "ü": None},
                },
            )
            assert made.status_code == 201, made.text
            history.created[made.json()["id"]] = made.json()
        assert (await orders.post("/v1/customers", json={"email": "buyer@example.com"})).status_code == 201
        first_product = next(iter(history.created))
        deadline = time.monotonic() + 60
        while (placed := await _place_order(orders, first_product, str(uuid.uuid4()))).status_code != 201:
            assert placed.status_code == 422, placed.text  # the read model is not fed yet
            assert time.monotonic() < deadline, placed.text
            await asyncio.sleep(0.2)
        history.order_numbers.append(placed.json()["order_number"])
        stable = list(history.created)[5:]  # never written during the run
        answers_before = {pid: (await catalog.get(f"/v1/products/{pid}")).json() for pid in stable}
        order_before = (await orders.get(f"/v1/orders/{placed.json()['id']}")).json()
        category_before = (await catalog.get(f"/v1/categories/{category['id']}")).json()

        stop = asyncio.Event()

        async def create_products() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                response = await catalog.post("/v1/products", json={"name": f"New {i}", "price": "3.30"})
                if response.status_code != 201:
                    history.failed("create", response)
                    continue
                history.write_times.append(time.monotonic())
                history.created[response.json()["id"]] = response.json()

        async def update_products() -> None:
            i = 0
            targets = list(history.created)[:5]
            while not stop.is_set():
                i += 1
                pid = targets[i % len(targets)]
                price = f"{i}.25"
                response = await catalog.patch(f"/v1/products/{pid}", json={"price": price})
                if response.status_code != 200:
                    history.failed("update", response)
                    continue
                history.write_times.append(time.monotonic())
                history.prices[pid] = price

        async def place_orders() -> None:
            while not stop.is_set():
                response = await _place_order(orders, first_product, str(uuid.uuid4()))
                if response.status_code != 201:
                    history.failed("order", response)
                    continue
                history.write_times.append(time.monotonic())
                history.order_numbers.append(response.json()["order_number"])

        async def read() -> None:
            while not stop.is_set():
                response = await catalog.get(f"/v1/products/{stable[0]}")
                if response.status_code != 200:
                    history.failed("read", response)
                history.reads += 1

        load = [asyncio.create_task(job()) for job in (create_products, update_products, place_orders, read)]
        try:
            await asyncio.sleep(0.5)
            made = await migrator.post(
                "/v1/migrations", json={"tenant_id": str(tenant_id), "reason": "load test"}
            )
            assert made.status_code == 202, made.text
            done = await wait_for(migrator, made.json()["id"], {"completed", "failed", "cancelled"})
            await asyncio.sleep(LOAD_AFTER_SECONDS)
        finally:
            stop.set()
            await asyncio.gather(*load)
        assert done["status"] == "completed", done

        # Every answer about what did not change is the same on the new placement.
        assert {pid: (await catalog.get(f"/v1/products/{pid}")).json() for pid in stable} == answers_before
        assert (await orders.get(f"/v1/orders/{placed.json()['id']}")).json() == order_before
        assert (await catalog.get(f"/v1/categories/{category['id']}")).json() == category_before
        # Every acknowledged write is there: products created, last prices acknowledged.
        for pid, price in history.prices.items():
            assert Decimal((await catalog.get(f"/v1/products/{pid}")).json()["price"]) == Decimal(price)
        # The product events: complete (one product.created per product) and, per product, in order.
        deadline = time.monotonic() + 30
        while {e["data"]["product_id"] for e in events if e["event_type"] == "product.created"} < set(
            list(history.created)[10:]
        ):
            assert time.monotonic() < deadline, "product.created events missing"
            await asyncio.sleep(0.1)

    assert history.failures == [], history.failures[:10]
    assert (await directory(stack_env, tenant_id))["tenant_type"] == "dedicated"
    moved = await checksums(stack_env, tenant_id, "dedicated")
    assert moved["products"][0] == len(history.created)
    assert moved["orders"][0] == len(history.order_numbers)
    numbers = sorted(int("".join(ch for ch in n if ch.isdigit())) for n in history.order_numbers)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "order numbers skip or repeat"
    for pid in history.prices:
        updates = [e["data"]["updated_at"] for e in events if e["data"]["product_id"] == pid]
        assert updates == sorted(updates), f"events of {pid} out of order"
    gaps = [b - a for a, b in zip(sorted(history.write_times), sorted(history.write_times)[1:], strict=False)]
    freeze = max(gaps) if gaps else 0.0
    print(
        f"move under load: {len(history.write_times)} writes, {history.reads} reads, 0 failed; "
        f"longest gap between successful writes {freeze * 1000:.0f} ms; "
        f"cutover freeze {done['progress']['freeze_ms']} ms"
    )
    assert done["progress"]["freeze_ms"] < 2000
