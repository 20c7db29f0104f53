"""The product read model, fed by real catalog.products.v1 events through the app's consumer: once per
event id, never back to an older version, bad messages dead-lettered without stopping the consumer.
Each test ends by waiting for a later "sentinel" event of the same partition, so what it asserts about
earlier messages has been consumed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from events import topics
from events.envelope import Envelope
from events.models import ProductData

from tests.integration.orders.conftest import (
    Kind,
    MakeTenant,
    OrdersApp,
    ProductFeed,
    TenantClient,
    product_event,
    random_email,
    records,
)


def product_id(envelope: Envelope) -> uuid.UUID:
    return ProductData.model_validate(envelope.data).product_id


async def test_redelivered_events_change_nothing(
    placement: Kind, make_tenant: MakeTenant, feed: ProductFeed
) -> None:
    tenant_id = await make_tenant(placement)
    lamp, chair = product_event(tenant_id, price="10.00"), product_event(tenant_id, price="20.00")
    await feed.seed(tenant_id, lamp, chair)
    assert await feed.processed(tenant_id) == 2
    before = [await feed.stored(tenant_id, product_id(e)) for e in (lamp, chair)]

    # The same events twice more, and one reusing lamp's event id with other content: all dropped.
    forged = lamp.model_copy(
        update={"data": lamp.data | {"price": "99.00", "updated_at": datetime.now(UTC).isoformat()}}
    )
    sentinel = product_event(tenant_id)
    await feed.publish(lamp, chair, lamp, chair, forged, sentinel, partition=0)
    await feed.wait_applied(sentinel)

    assert await feed.processed(tenant_id) == 3
    assert [await feed.stored(tenant_id, product_id(e)) for e in (lamp, chair)] == before


async def test_an_older_event_does_not_overwrite_a_newer_one(
    placement: Kind, make_tenant: MakeTenant, feed: ProductFeed, orders_app: OrdersApp
) -> None:
    tenant_id = await make_tenant(placement)
    pid = uuid.uuid4()
    now = datetime.now(UTC)
    newer = product_event(tenant_id, pid, price="20.00", name="New name", updated_at=now)
    older = product_event(
        tenant_id, pid, price="10.00", name="Old name", updated_at=now - timedelta(seconds=5)
    )
    await feed.seed(tenant_id, newer)
    sentinel = product_event(tenant_id)
    await feed.publish(older, sentinel, partition=1)
    await feed.wait_applied(sentinel)

    row = await feed.stored(tenant_id, pid)
    assert (row.name, row.price, row.version_at) == ("New name", Decimal("20.00"), now)
    assert await feed.processed(tenant_id) == 3  # the older event was seen, and had no effect

    client = TenantClient(orders_app.http, tenant_id, placement)
    order = await client.post(
        "/v1/orders",
        json={"customer_email": random_email(), "items": [{"product_id": str(pid), "quantity": 1}]},
    )
    assert order.status_code == 201
    assert order.json()["items"][0]["unit_price"] == "20.00"


async def test_deleted_and_restored_products(
    placement: Kind, make_tenant: MakeTenant, feed: ProductFeed, orders_app: OrdersApp
) -> None:
    tenant_id = await make_tenant(placement)
    client = TenantClient(orders_app.http, tenant_id, placement)
    pid = uuid.uuid4()
    start = datetime.now(UTC)
    body = {"customer_email": random_email(), "items": [{"product_id": str(pid), "quantity": 1}]}

    await feed.seed(tenant_id, product_event(tenant_id, pid, price="5.00", updated_at=start))
    assert (await client.post("/v1/orders", json=body)).status_code == 201

    deleted = product_event(
        tenant_id, pid, price="5.00", deleted=True, updated_at=start + timedelta(seconds=1)
    )
    await feed.seed(tenant_id, deleted)
    refused = await client.post("/v1/orders", json=body)
    assert refused.status_code == 422
    assert str(pid) in refused.json()["detail"]

    archived = product_event(tenant_id, pid, status="archived", updated_at=start + timedelta(seconds=2))
    await feed.seed(tenant_id, archived)
    assert (await client.post("/v1/orders", json=body)).status_code == 422

    restored = product_event(tenant_id, pid, price="6.00", updated_at=start + timedelta(seconds=3))
    await feed.seed(tenant_id, restored)
    again = await client.post("/v1/orders", json=body)
    assert again.status_code == 201
    assert again.json()["total_amount"] == "6.00"


async def test_malformed_messages_are_dead_lettered_and_consumption_goes_on(
    placement: Kind, make_tenant: MakeTenant, feed: ProductFeed, orders_app: OrdersApp
) -> None:
    tenant_id = await make_tenant(placement)
    key = str(tenant_id).encode()
    bad_data = Envelope(
        event_type="product.updated", tenant_id=tenant_id, producer="catalog", data={"price": "x"}
    )
    async with records(orders_app.kafka, topics.dlq(topics.PRODUCTS)) as dead:
        await feed.send_raw(b"not json", key=key)
        await feed.publish(bad_data)
        after = product_event(tenant_id)
        await feed.publish(after)

        not_json = (await dead.wait_for(lambda r: r.value == b"not json" and r.key == key))[0]
        headers = {k: v.decode() for k, v in not_json.headers}
        assert headers["x-dlq-error"].startswith("ValidationError")
        assert headers["x-dlq-original-topic"] == topics.PRODUCTS
        assert headers["x-dlq-attempts"] == "3"
        invalid = (await dead.wait_for(lambda r: r.value == bad_data.to_json()))[0]
        assert dict(invalid.headers)["x-dlq-error"].startswith(b"ValidationError")

        # The event after them is still consumed.
        await feed.wait_applied(after)
    assert await feed.processed(tenant_id) == 1


async def test_events_of_unusable_tenants_are_skipped_not_dead_lettered(
    placement: Kind, make_tenant: MakeTenant, feed: ProductFeed, orders_app: OrdersApp
) -> None:
    tenant_id = await make_tenant(placement)
    suspended = await make_tenant("shared", status="suspended")
    unknown = product_event(uuid.uuid4())
    unusable = product_event(suspended)
    sentinel = product_event(tenant_id)
    async with records(orders_app.kafka, topics.dlq(topics.PRODUCTS)) as dead:
        await feed.publish(unknown, unusable, sentinel, partition=2)
        await feed.wait_applied(sentinel)
        assert not [r for r in dead.records if r.value in (unknown.to_json(), unusable.to_json())]
