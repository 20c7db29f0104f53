"""Consumers and the services under real faults, on a stack of the module's own (tests.support.
processes.IsolatedStack: its own PostgreSQL and Kafka, so stopping them disturbs no other test).

- PostgreSQL stopped for ~10 s while product changes flow from catalog to orders: afterwards the
  orders' read model equals the catalog exactly, nothing was dead-lettered, and the consumer did
  meet the outage (it retried transient failures, holding its partitions).
- A service started while Kafka is stopped serves (readyz 200, Kafka reported down) and takes writes;
  when Kafka starts, their events go out in commit order, the consumers start consuming, and the
  requests counted meanwhile are published, summed exactly, unknown tenant ids never counted; for
  orders and for catalog.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from catalog.app import create_app as create_catalog
from catalog.settings import CatalogSettings
from events import topics
from events.dead_letter import HANDLER_OUTCOMES
from events.dlq import read_dead_letters
from orders import repository
from orders.app import create_app as create_orders
from orders.settings import OrdersSettings
from sqlalchemy import select
from tenantdb import TenantDB, TenantDBSettings
from tenantdb.fencing import flip_placement
from tenantdb.provisioning import provision_dedicated
from tenantschema.tables import order_products, products

from tests.integration.orders.conftest import product_event
from tests.support.apps import serve
from tests.support.databases import role_url
from tests.support.processes import IsolatedStack
from tests.support.relay import relay_settings

pytestmark = pytest.mark.slow

TENANT = "X-Tenant-ID"


def _common(stack: IsolatedStack) -> dict[str, Any]:
    return {
        "platform_database_url": stack.env["PLATFORM_DATABASE_URL"],
        "shared_database_url": stack.env["SHARED_DATABASE_URL"],
        "kafka_bootstrap_servers": stack.kafka,
        "dedicated_password_secret": stack.env["DEDICATED_PASSWORD_SECRET"],
        **relay_settings(stack.env),
    }


async def _tenant(stack: IsolatedStack, kind: str = "shared") -> uuid.UUID:
    tenant_id = uuid.uuid4()
    platform = await asyncpg.connect(role_url(stack.env, "tenancy"))  # tenants: tenancy writes them
    try:
        await platform.execute(
            "INSERT INTO tenants (id, name, subdomain) VALUES ($1, $2, $3)",
            tenant_id,
            f"Fault {tenant_id.hex[:8]}",
            f"f-{tenant_id.hex}",
        )
        if kind == "dedicated":
            database = await provision_dedicated(
                stack.env["ADMIN_DATABASE_URL"],
                stack.env["OWNER_DATABASE_URL"],
                tenant_id,
                stack.env["DEDICATED_PASSWORD_SECRET"],
            )
            await flip_placement(platform, tenant_id, tenant_type="dedicated", database_name=database)
    finally:
        await platform.close()
    return tenant_id


async def _eventually(probe: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.2)


def _outcomes(outcome: str) -> float:
    return HANDLER_OUTCOMES.labels(topics.PRODUCTS, outcome)._value.get()


# PostgreSQL down


async def _catalog_truth(tdb: TenantDB, tenant_id: uuid.UUID) -> dict[uuid.UUID, tuple[Any, ...]]:
    async with tdb.unit_of_work(tenant_id, readonly=True) as uow:
        query = select(
            products.c.id, products.c.name, products.c.price, products.c.status, products.c.deleted_at
        )
        rows = (await uow.connection.execute(query)).all()
    return {r.id: (r.name, Decimal(r.price), r.status, r.deleted_at is not None) for r in rows}


async def _read_model(tdb: TenantDB, tenant_id: uuid.UUID) -> dict[uuid.UUID, tuple[Any, ...]]:
    async with tdb.unit_of_work(tenant_id, readonly=True) as uow:
        query = select(
            order_products.c.id,
            order_products.c.name,
            order_products.c.price,
            order_products.c.status,
            order_products.c.deleted,
        )
        rows = (await uow.connection.execute(query)).all()
    return {r.id: (r.name, Decimal(r.price), r.status, r.deleted) for r in rows}


async def test_postgres_stopped_while_products_flow_loses_nothing(isolated: IsolatedStack) -> None:
    tenants = [await _tenant(isolated, "shared"), await _tenant(isolated, "dedicated")]
    catalog = create_catalog(CatalogSettings(**_common(isolated)))
    orders = create_orders(
        OrdersSettings(**_common(isolated), products_group_id=f"orders.{uuid.uuid4().hex}")
    )
    retried_before = _outcomes("retried_transient")
    async with serve(orders), serve(catalog) as http:
        ids: dict[uuid.UUID, list[str]] = {}
        for tenant in tenants:
            body = {"items": [{"name": f"P{i}", "price": "1.00"} for i in range(1000)]}
            response = await http.post("/v1/products/bulk", json=body, headers={TENANT: str(tenant)})
            assert response.status_code == 201, response.text
            ids[tenant] = response.json()["ids"]

        stop = asyncio.Event()
        accepted = 0

        async def writer() -> None:
            """Changes products all along (the outage makes some fail: not asserted here)."""
            nonlocal accepted
            round_ = 0
            while not stop.is_set():
                round_ += 1
                for tenant in tenants:
                    pid = ids[tenant][round_ % 50]
                    try:
                        if round_ % 17 == 0:
                            response = await http.delete(f"/v1/products/{pid}", headers={TENANT: str(tenant)})
                        else:
                            response = await http.patch(
                                f"/v1/products/{pid}",
                                json={"price": f"{round_ % 90 + 2}.{round_ % 100:02d}", "name": f"R{round_}"},
                                headers={TENANT: str(tenant)},
                            )
                    except Exception:  # the in-process app's own error while the server is away
                        continue
                    accepted += response.status_code < 300
                await asyncio.sleep(0.02)

        writing = asyncio.create_task(writer())
        try:
            # The bulk events are still being applied when the server goes away.
            await asyncio.to_thread(isolated.stop_postgres)
            await asyncio.sleep(10)
            await asyncio.to_thread(isolated.start_again)
            await asyncio.sleep(3)
        finally:
            stop.set()
            await writing
        assert accepted > 0

        catalog_tdb: TenantDB = catalog.state.tdb
        orders_tdb: TenantDB = orders.state.tdb

        async def converged() -> bool:
            for tenant in tenants:
                try:
                    truth = await _catalog_truth(catalog_tdb, tenant)
                    model = await _read_model(orders_tdb, tenant)
                except Exception:  # a pooled connection from before the restart, discarded on error
                    return False
                if truth != model:
                    return False
            return True

        restarted = time.monotonic() - 3
        await _eventually(converged, timeout=120, what="orders' read model equal to the catalog")
        print(f"read model converged {time.monotonic() - restarted:.1f}s after PostgreSQL restarted")
        for tenant in tenants:
            truth = await _catalog_truth(catalog_tdb, tenant)
            assert len(truth) == 1000
            assert any(deleted for *_, deleted in truth.values())
    assert await read_dead_letters(isolated.kafka, topics.PRODUCTS) == []
    # The consumer did meet the outage, and waited it out rather than dead-lettering.
    assert _outcomes("retried_transient") > retried_before


# Kafka down


@asynccontextmanager
async def _reader(bootstrap: str, topic: str) -> AsyncIterator[list[Any]]:
    """Every record of `topic` from its beginning (the isolated Kafka's topics start empty)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    seen: list[Any] = []
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)

        async def pump() -> None:
            async for record in consumer:
                seen.append(record)

        task = asyncio.create_task(pump())
        try:
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await consumer.stop()


async def test_a_service_started_without_kafka_serves_and_catches_up(isolated: IsolatedStack) -> None:
    tenant = await _tenant(isolated)
    unknown = uuid.uuid4()
    product = product_event(tenant, price="4.00", name="Kettle")
    product_id = json.loads(product.to_json())["data"]["product_id"]
    await _seed_read_model(isolated, tenant, product_id)
    await asyncio.to_thread(isolated.stop_kafka)
    settings = OrdersSettings(
        **_common(isolated),
        products_group_id=f"orders.{uuid.uuid4().hex}",
        request_count_window_seconds=0.2,
    )
    app = create_orders(settings)
    started = time.monotonic()
    async with serve(app) as http:
        assert time.monotonic() - started < 10, "the start waited for Kafka"
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ok"
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["kafka"].startswith("error")

        placed: list[str] = []
        for i in range(5):
            response = await http.post(
                "/v1/orders",
                json={
                    "customer_email": f"c{i}@example.com",
                    "items": [{"product_id": product_id, "quantity": 1}],
                },
                headers={TENANT: str(tenant)},
            )
            assert response.status_code == 201, response.text
            placed.append(response.json()["id"])
        for _ in range(7):
            assert (
                await http.get(f"/v1/orders/{placed[0]}", headers={TENANT: str(tenant)})
            ).status_code == 200
        for _ in range(4):  # an id that names no tenant: refused, and never counted
            assert (await http.get("/v1/orders", headers={TENANT: str(unknown)})).status_code == 404
        await asyncio.sleep(1)  # several count windows pass with Kafka away

        await asyncio.to_thread(isolated.start_again)

        async with (
            _reader(isolated.kafka, topics.ORDERS) as order_records,
            _reader(isolated.kafka, topics.REQUESTS) as count_records,
        ):
            mine = str(tenant)

            async def all_placed() -> list[str] | None:
                ids = [
                    json.loads(r.value)["data"]["order_id"]
                    for r in order_records
                    if r.key == mine.encode() and json.loads(r.value)["event_type"] == "order.placed"
                ]
                return ids if len(ids) >= len(placed) else None

            delivered = await _eventually(
                all_placed, timeout=90, what="the orders' events after Kafka returned"
            )
            assert delivered == placed  # once each, in commit order

            def counted(tenant_id: uuid.UUID) -> int:
                by_id = {
                    e["event_id"]: e["data"]["count"]
                    for e in (json.loads(r.value) for r in count_records)
                    if e["tenant_id"] == str(tenant_id)
                }
                return sum(by_id.values())

            # 5 POSTs + 7 GETs of the tenant; /readyz is not tenant-scoped.
            await _eventually(lambda: _true(counted(tenant) >= 12), timeout=60, what="the request counts")
            await asyncio.sleep(1)  # a later window would show a double count
            assert counted(tenant) == 12
            assert counted(unknown) == 0

            # The consumer joined its group once Kafka came, and applies what arrives.
            later = product_event(tenant, price="5.50", name="Kettle 2")
            producer = AIOKafkaProducer(bootstrap_servers=isolated.kafka, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(topics.PRODUCTS, later.to_json(), key=later.key())
            finally:
                await producer.stop()
            tdb: TenantDB = app.state.tdb
            later_id = uuid.UUID(json.loads(later.to_json())["data"]["product_id"])

            async def applied() -> bool:
                return later_id in await _read_model(tdb, tenant)

            await _eventually(applied, timeout=90, what="the product event consumed after Kafka returned")
        ready = await http.get("/readyz")
        assert ready.json()["checks"]["kafka"] == "ok"


async def _true(value: bool) -> bool:
    return value


async def _seed_read_model(stack: IsolatedStack, tenant: uuid.UUID, product_id: str) -> None:
    """A product in orders' read model without Kafka (no consumer can run yet): the row the consumer
    would have written."""
    tdb = TenantDB(
        TenantDBSettings(
            platform_database_url=stack.env["PLATFORM_DATABASE_URL"],
            shared_database_url=stack.env["SHARED_DATABASE_URL"],
            dedicated_password_secret=stack.env["DEDICATED_PASSWORD_SECRET"],
        )
    )
    try:
        async with tdb.unit_of_work(tenant) as uow:
            row = {
                "id": uuid.UUID(product_id),
                "name": "Kettle",
                "sku": None,
                "price": Decimal("4.00"),
                "status": "active",
                "deleted": False,
                "version_at": datetime.now(UTC),
            }
            await repository.upsert_product(uow.connection, row)
            await uow.commit()
    finally:
        await tdb.close()


async def test_catalog_started_without_kafka_serves_and_publishes_its_events_and_counts_after(
    isolated: IsolatedStack,
) -> None:
    """The same for catalog (its own factory path, its own outbox rows): product writes accepted with
    Kafka away, their events out once each in commit order when it returns, request counts exact."""
    tenant = await _tenant(isolated)
    unknown = uuid.uuid4()
    await asyncio.to_thread(isolated.stop_kafka)
    app = create_catalog(CatalogSettings(**_common(isolated), request_count_window_seconds=0.2))
    started = time.monotonic()
    async with serve(app) as http:
        assert time.monotonic() - started < 10, "the start waited for Kafka"
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["kafka"].startswith("error")
        created: list[str] = []
        for i in range(4):
            response = await http.post(
                "/v1/products", json={"name": f"Outage {i}", "price": "3.00"}, headers={TENANT: str(tenant)}
            )
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])
        updated = await http.patch(
            f"/v1/products/{created[0]}", json={"price": "3.50"}, headers={TENANT: str(tenant)}
        )
        assert updated.status_code == 200, updated.text
        for _ in range(3):
            assert (await http.get("/v1/products", headers={TENANT: str(tenant)})).status_code == 200
        for _ in range(2):  # names no tenant: refused, never counted
            assert (await http.get("/v1/products", headers={TENANT: str(unknown)})).status_code == 404
        await asyncio.sleep(1)  # several count windows pass with Kafka away

        await asyncio.to_thread(isolated.start_again)

        async with (
            _reader(isolated.kafka, topics.PRODUCTS) as product_records,
            _reader(isolated.kafka, topics.REQUESTS) as count_records,
        ):
            mine = str(tenant).encode()

            async def all_written() -> list[tuple[str, str]] | None:
                seen = [
                    (event["event_type"], event["data"]["product_id"])
                    for event in (json.loads(r.value) for r in product_records if r.key == mine)
                ]
                return seen if len(seen) >= len(created) + 1 else None

            delivered = await _eventually(
                all_written, timeout=90, what="catalog's events after Kafka returned"
            )
            # Once each, in commit order: the four creations, then the update.
            assert delivered == [("product.created", p) for p in created] + [("product.updated", created[0])]

            def counted(tenant_id: uuid.UUID) -> int:
                by_id = {
                    e["event_id"]: e["data"]["count"]
                    for e in (json.loads(r.value) for r in count_records)
                    if e["tenant_id"] == str(tenant_id)
                }
                return sum(by_id.values())

            # 4 POSTs, 1 PATCH and 3 GETs of the tenant.
            await _eventually(lambda: _true(counted(tenant) >= 8), timeout=60, what="the request counts")
            await asyncio.sleep(1)  # a later window would show a double count
            assert counted(tenant) == 8
            assert counted(unknown) == 0
