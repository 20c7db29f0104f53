"""Fixtures for the orders service against the dev stack: one app for the session (broker, relay,
counter and the product consumer running for real), tenants on either placement, and a product feed
that publishes real `catalog.products.v1` events (the catalog service need not exist) and waits,
with a deadline, until the app's read model holds them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from events import topics
from events.envelope import Envelope
from events.models import ProductData
from fastapi import FastAPI
from orders.app import create_app
from orders.settings import OrdersSettings
from sqlalchemy import func, select
from tenantdb import TenantDB
from tenantschema.tables import order_products, processed_events

from tests.integration.tenantdb.conftest import Kind, MakeTenant, dedicated_secret, tenant_factory
from tests.support.apps import serve
from tests.support.databases import role_settings
from tests.support.kafka import tail
from tests.support.relay import relay_settings

TENANT_HEADER = "X-Tenant-ID"
PLACEMENTS: tuple[Kind, ...] = ("shared", "dedicated")
WAIT_SECONDS = 60.0


def orders_settings(stack_env: dict[str, str], **overrides: Any) -> OrdersSettings:
    values: dict[str, Any] = {
        **role_settings(stack_env, "orders"),
        "kafka_bootstrap_servers": stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        "dedicated_password_secret": dedicated_secret(),
        **relay_settings(stack_env),
    }
    return OrdersSettings(**(values | overrides))


async def eventually(
    probe: Callable[[], Awaitable[bool]], *, timeout: float = WAIT_SECONDS, what: str = "condition"
) -> None:
    """Poll `probe` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.05)


# tenants


@pytest.fixture(scope="session")
async def make_tenant(stack_env: dict[str, str]) -> AsyncIterator[MakeTenant]:
    """One factory for the session: its tenants are retired when the session ends."""
    async with tenant_factory(stack_env) as make:
        yield make


# the app


@dataclass
class OrdersApp:
    app: FastAPI
    http: httpx.AsyncClient
    kafka: str

    @property
    def tdb(self) -> TenantDB:
        tdb: TenantDB = self.app.state.tdb
        return tdb


async def fresh_group_at_end(bootstrap: str, topic: str) -> str:
    """A consumer group of the session's own whose offsets start at the topic's end: the session app
    neither chews through what earlier tests (or earlier sessions) left on the topic, nor shares its
    partitions with other apps in the default group."""
    group = f"orders.products.test-{uuid.uuid4().hex[:12]}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(topics.PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
    finally:
        await consumer.stop()
    return group


@pytest.fixture(scope="session")
async def orders_app(stack_env: dict[str, str], make_tenant: MakeTenant) -> AsyncIterator[OrdersApp]:
    group = await fresh_group_at_end(stack_env["KAFKA_BOOTSTRAP_SERVERS"], topics.PRODUCTS)
    app = create_app(orders_settings(stack_env, products_group_id=group))
    async with serve(app) as client:
        yield OrdersApp(app, client, stack_env["KAFKA_BOOTSTRAP_SERVERS"])


# the product feed


@pytest.fixture(scope="session")
async def kafka_producer(stack_env: dict[str, str]) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"], acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def product_event(
    tenant_id: uuid.UUID,
    product_id: uuid.UUID | None = None,
    *,
    price: str = "9.99",
    name: str | None = None,
    sku: str | None = None,
    status: str = "active",
    deleted: bool = False,
    updated_at: datetime | None = None,
    event_type: str | None = None,
) -> Envelope:
    product_id = product_id or uuid.uuid4()
    data = ProductData(
        product_id=product_id,
        name=name or f"Product {product_id.hex[:8]}",
        sku=sku if sku is not None else f"SKU-{product_id.hex[:10]}",
        price=Decimal(price),
        status=status,  # type: ignore[arg-type]
        deleted=deleted,
        category_id=None,
        updated_at=updated_at or datetime.now(UTC),
    )
    return Envelope(
        event_type=event_type or ("product.deleted" if deleted else "product.updated"),
        tenant_id=tenant_id,
        producer="catalog",
        data=data.model_dump(mode="json"),
    )


@dataclass
class ProductFeed:
    """Publishes product events as the catalog would, and watches the orders' read model."""

    producer: AIOKafkaProducer
    tdb: TenantDB

    async def publish(self, *envelopes: Envelope, partition: int | None = None) -> None:
        for envelope in envelopes:
            await self.send_raw(envelope.to_json(), key=envelope.key(), partition=partition)

    async def send_raw(self, value: bytes, *, key: bytes, partition: int | None = None) -> None:
        await (await self.producer.send(topics.PRODUCTS, value, key=key, partition=partition))

    async def stored(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> Any:
        async with self.tdb.unit_of_work(tenant_id, readonly=True) as uow:
            query = select(order_products).where(order_products.c.id == product_id)
            return (await uow.connection.execute(query)).first()

    async def processed(self, tenant_id: uuid.UUID) -> int:
        async with self.tdb.unit_of_work(tenant_id, readonly=True) as uow:
            query = select(func.count()).select_from(processed_events)
            return int((await uow.connection.execute(query)).scalar_one())

    async def wait_applied(self, *envelopes: Envelope) -> None:
        """Until the read model holds each event's product at (at least) the event's version."""
        for envelope in envelopes:
            product = ProductData.model_validate(envelope.data)

            async def applied(envelope: Envelope = envelope, product: ProductData = product) -> bool:
                row = await self.stored(envelope.tenant_id, product.product_id)
                return row is not None and row.version_at >= product.updated_at

            await eventually(applied, what=f"product {product.product_id} in the read model")

    async def seed(self, tenant_id: uuid.UUID, *envelopes: Envelope) -> None:
        await self.publish(*envelopes)
        await self.wait_applied(*envelopes)


@pytest.fixture(scope="session")
def feed(kafka_producer: AIOKafkaProducer, orders_app: OrdersApp) -> ProductFeed:
    return ProductFeed(kafka_producer, orders_app.tdb)


# clients


@dataclass
class TenantClient:
    """The session app's client sending one tenant's X-Tenant-ID, with products in its read model."""

    http: httpx.AsyncClient
    tenant_id: uuid.UUID
    kind: Kind
    products: dict[str, uuid.UUID] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {TENANT_HEADER: str(self.tenant_id)}

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers | kwargs.pop("headers", {})
        return await self.http.request(method, url, headers=headers, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)


NewClient = Callable[[], Awaitable[TenantClient]]


async def _new_client(
    kind: Kind, make_tenant: MakeTenant, orders_app: OrdersApp, feed: ProductFeed
) -> TenantClient:
    """A fresh tenant with four products: `lamp` 9.99 and `chair` 45.50 active, `draft` in draft,
    `gone` deleted."""
    tenant_id = await make_tenant(kind)
    client = TenantClient(orders_app.http, tenant_id, kind)
    events = {
        "lamp": product_event(tenant_id, price="9.99", name="Lamp"),
        "chair": product_event(tenant_id, price="45.50", name="Chair"),
        "draft": product_event(tenant_id, price="1.00", status="draft"),
        "gone": product_event(tenant_id, price="2.00", deleted=True),
    }
    await feed.seed(tenant_id, *events.values())
    client.products = {name: ProductData.model_validate(e.data).product_id for name, e in events.items()}
    return client


@pytest.fixture(scope="module", params=PLACEMENTS)
def placement(request: pytest.FixtureRequest) -> Kind:
    kind: Kind = request.param
    return kind


@pytest.fixture(scope="module")
async def tenant(
    placement: Kind, make_tenant: MakeTenant, orders_app: OrdersApp, feed: ProductFeed
) -> TenantClient:
    """One tenant per module and placement, shared by its tests (they use random emails)."""
    return await _new_client(placement, make_tenant, orders_app, feed)


@pytest.fixture
def new_tenant(
    placement: Kind, make_tenant: MakeTenant, orders_app: OrdersApp, feed: ProductFeed
) -> NewClient:
    """A factory of fresh tenants on the module's placement (order numbers start at 1001)."""

    async def make() -> TenantClient:
        return await _new_client(placement, make_tenant, orders_app, feed)

    return make


def random_email() -> str:
    return f"buyer-{uuid.uuid4().hex[:12]}@example.com"


# Kafka


@dataclass
class Records:
    records: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)

    async def wait_for(
        self, predicate: Callable[[ConsumerRecord[bytes, bytes]], bool], *, count: int = 1
    ) -> list[ConsumerRecord[bytes, bytes]]:
        found: list[ConsumerRecord[bytes, bytes]] = []

        async def enough() -> bool:
            found[:] = [r for r in self.records if predicate(r)]
            return len(found) >= count

        await eventually(enough, what=f"{count} matching record(s)")
        return found


@asynccontextmanager
async def records(bootstrap: str, topic: str) -> AsyncIterator[Records]:
    """Every record (key, headers, value) arriving on `topic` after entry."""
    seen = Records()
    async with tail(bootstrap, topic, seen.records.append):
        yield seen
