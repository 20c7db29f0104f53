"""What the orders service publishes on orders.orders.v1: the contract's envelope (CONTRACT.md §4),
through the outbox, for a shared and a dedicated tenant."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from events import topics
from events.models import OrderPlaced, OrderStatusChanged

from tests.integration.orders.conftest import OrdersApp, TenantClient, random_email, records

ENVELOPE_FIELDS = {"event_id", "event_type", "tenant_id", "occurred_at", "schema_version", "producer", "data"}


def check_envelope(value: dict[str, Any], key: bytes | None, tenant: TenantClient, event_type: str) -> None:
    assert set(value) == ENVELOPE_FIELDS
    assert value["event_type"] == event_type
    assert value["schema_version"] == 1
    assert value["producer"] == "orders"
    assert value["tenant_id"] == str(tenant.tenant_id)
    assert key == str(tenant.tenant_id).encode()
    uuid.UUID(value["event_id"])
    assert datetime.fromisoformat(value["occurred_at"]).tzinfo is not None


async def test_order_events_match_the_contract(orders_app: OrdersApp, tenant: TenantClient) -> None:
    async with records(orders_app.kafka, topics.ORDERS) as seen:
        body = {
            "customer_email": random_email(),
            "items": [{"product_id": str(tenant.products["lamp"]), "quantity": 3}],
        }
        order = (await tenant.post("/v1/orders", json=body)).json()
        await tenant.patch(f"/v1/orders/{order['id']}", json={"status": "confirmed"})

        def about(record: Any) -> bool:
            return json.loads(record.value).get("data", {}).get("order_id") == order["id"]

        placed, changed = await seen.wait_for(about, count=2)

    # Published in order (one tenant, one partition, the relay keeps the outbox order).
    placed_value, changed_value = json.loads(placed.value), json.loads(changed.value)
    check_envelope(placed_value, placed.key, tenant, "order.placed")
    check_envelope(changed_value, changed.key, tenant, "order.status_changed")

    data = OrderPlaced.model_validate(placed_value["data"])
    assert str(data.order_id) == order["id"]
    assert data.order_number == order["order_number"]
    assert data.customer_email == order["customer_email"]
    assert str(data.customer_id) == order["customer_id"]
    assert data.currency == "USD"
    assert placed_value["data"]["subtotal_amount"] == placed_value["data"]["total_amount"] == "29.97"
    assert [(str(i.product_id), i.quantity, str(i.unit_price), str(i.line_total)) for i in data.items] == [
        (str(tenant.products["lamp"]), 3, "9.99", "29.97")
    ]
    assert data.created_at == datetime.fromisoformat(order["created_at"])

    status = OrderStatusChanged.model_validate(changed_value["data"])
    assert (status.old_status, status.new_status) == ("pending", "confirmed")
    assert status.order_number == order["order_number"]


async def test_refused_requests_publish_nothing(orders_app: OrdersApp, tenant: TenantClient) -> None:
    def place(product_id: uuid.UUID) -> dict[str, Any]:
        return {"customer_email": random_email(), "items": [{"product_id": str(product_id), "quantity": 1}]}

    async with records(orders_app.kafka, topics.ORDERS) as seen:
        assert (await tenant.post("/v1/orders", json=place(uuid.uuid4()))).status_code == 422
        placed = (await tenant.post("/v1/orders", json=place(tenant.products["chair"]))).json()
        assert (
            await tenant.patch(f"/v1/orders/{placed['id']}", json={"status": "shipped"})
        ).status_code == 409
        # A tenant's events arrive in order: once a later order's event is here, anything the refused
        # requests could have published would be here too.
        later = (await tenant.post("/v1/orders", json=place(tenant.products["lamp"]))).json()
        await seen.wait_for(lambda r: json.loads(r.value)["data"].get("order_id") == later["id"])
        mine = [json.loads(r.value) for r in seen.records if r.key == str(tenant.tenant_id).encode()]
        assert [(m["event_type"], m["data"]["order_id"]) for m in mine] == [
            ("order.placed", placed["id"]),
            ("order.placed", later["id"]),
        ]
