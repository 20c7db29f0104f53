"""The product read model, fed by real catalog.products.v1 events through the app's consumer: once per
event id, never back to an older version, bad messages dead-lettered without stopping the consumer.
Each test ends by waiting for a later "sentinel" event of the same partition, so what it asserts about
earlier messages has been consumed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from events import topics
from events.envelope import Envelope
from events.models import ProductData
from sqlalchemy import select
from tenantschema.tables import order_products

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

        # Only this app's letters: the stack's own orders service (make test runs it) may dead-letter
        # the same messages under its own group.
        group = orders_app.app.state.settings.products_group_id

        def ours(r: Any) -> bool:
            return dict(r.headers).get("x-dlq-group") == group.encode()

        not_json = (await dead.wait_for(lambda r: r.value == b"not json" and r.key == key and ours(r)))[0]
        headers = {k: v.decode() for k, v in not_json.headers}
        assert headers["x-dlq-error"].startswith("ValidationError")
        assert headers["x-dlq-error-kind"] == "invalid"
        assert headers["x-dlq-original-topic"] == topics.PRODUCTS
        assert headers["x-dlq-group"] == orders_app.app.state.settings.products_group_id
        assert headers["x-dlq-attempts"] == "1"  # wrong bytes stay wrong: no retries
        assert int(headers["x-dlq-partition"]) in range(topics.PARTITIONS)
        assert int(headers["x-dlq-offset"]) >= 0
        assert "x-dlq-event-id" not in headers
        invalid = (await dead.wait_for(lambda r: r.value == bad_data.to_json() and ours(r)))[0]
        invalid_headers = {k: v.decode() for k, v in invalid.headers}
        assert invalid_headers["x-dlq-error"].startswith("InvalidEvent")
        assert invalid_headers["x-dlq-event-id"] == str(bad_data.event_id)
        assert invalid_headers["x-dlq-partition"] == headers["x-dlq-partition"]  # one tenant, one partition
        assert int(invalid_headers["x-dlq-offset"]) > int(headers["x-dlq-offset"])

        # The event after them is still consumed.
        await feed.wait_applied(after)
    assert await feed.processed(tenant_id) == 1


async def test_suspended_tenants_events_are_applied_unknown_tenants_dead_lettered(
    placement: Kind, make_tenant: MakeTenant, feed: ProductFeed, orders_app: OrdersApp
) -> None:
    """A suspension can be undone: the read model must not drift meanwhile. An event of a tenant
    that does not exist fails the same way every time: dead-lettered after the retries."""
    tenant_id = await make_tenant(placement)
    suspended = await make_tenant(placement, status="suspended")
    unknown = product_event(uuid.uuid4())
    of_suspended = product_event(suspended)
    sentinel = product_event(tenant_id)
    async with records(orders_app.kafka, topics.dlq(topics.PRODUCTS)) as dead:
        await feed.publish(unknown, of_suspended, sentinel, partition=2)
        await feed.wait_applied(sentinel)
        group = orders_app.app.state.settings.products_group_id.encode()
        [letter] = await dead.wait_for(
            lambda r: r.value == unknown.to_json() and dict(r.headers).get("x-dlq-group") == group
        )
        assert not [r for r in dead.records if r.value == of_suspended.to_json()]
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["x-dlq-error"].startswith("TenantNotFound")
    assert headers["x-dlq-error-kind"] == "error"
    assert headers["x-dlq-attempts"] == "5"
    assert headers["x-dlq-event-id"] == str(unknown.event_id)
    assert headers["x-dlq-partition"] == "2"
    row = await _stored_while_suspended(
        feed, suspended, ProductData.model_validate(of_suspended.data).product_id
    )
    assert row is not None


async def _stored_while_suspended(feed: ProductFeed, tenant_id: uuid.UUID, product_id: uuid.UUID) -> Any:
    async with feed.tdb.unit_of_work(tenant_id, readonly=True, allow_suspended=True) as uow:
        query = select(order_products).where(order_products.c.id == product_id)
        return (await uow.connection.execute(query)).first()
