"""Hostile input at the orders' edge, table by table: every refusal is a 4xx problem naming the field,
and nothing is written (no customer or order row, no change, no outbox event). Totals are checked
before they are stored, including totals that overflow only when summed, and a customer whose running
total reached its column's maximum can still order."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from events.models import ProductData

from tests.integration.orders.conftest import (
    OrdersApp,
    ProductFeed,
    TenantClient,
    product_event,
    random_email,
)
from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.hostile import (
    INT64_MAX,
    MAX_BODY,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    NUL,
    Database,
    assert_problem,
    big_object,
    chunked,
    deep,
    json_bytes,
    tampered_cursors,
)

MAX_PRICE = "99999999.99"  # a product's price: numeric(10, 2)
MAX_AMOUNT = Decimal("9999999999.99")  # an order's amounts, a customer's total_spent: numeric(12, 2)


@pytest.fixture(scope="module")
async def client(make_tenant: MakeTenant, orders_app: OrdersApp, feed: ProductFeed) -> TenantClient:
    """A shared tenant whose read model holds `lamp` (9.99) and `dearest` (the highest price)."""
    tenant_id = await make_tenant("shared")
    events = {
        "lamp": product_event(tenant_id, price="9.99", name="Lamp"),
        "dearest": product_event(tenant_id, price=MAX_PRICE, name="Dearest"),
    }
    await feed.seed(tenant_id, *events.values())
    client = TenantClient(orders_app.http, tenant_id, "shared")
    client.products = {name: ProductData.model_validate(e.data).product_id for name, e in events.items()}
    return client


async def _written(shared: Database, tenant: uuid.UUID) -> tuple[int, int, int]:
    """(customers, orders, outbox events) of the tenant, RLS bypassed."""
    return (
        await shared.count("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant),
        await shared.count("SELECT count(*) FROM orders WHERE tenant_id = $1", tenant),
        await shared.count("SELECT count(*) FROM outbox WHERE tenant_id = $1", tenant),
    )


def _ids(table: list[Any]) -> list[str]:
    return [row[0] for row in table]


CUSTOMER_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("nul in email", {"email": f"a{NUL}@example.com"}, "email"),
    ("email past its maximum", {"email": "e" * 244 + "@example.com"}, "email"),
    ("not an email", {"email": "nobody"}, "email"),
    ("null email", {"email": None}, "email"),
    ("nul in first_name", {"first_name": f"A{NUL}"}, "first_name"),
    ("first_name past its maximum", {"first_name": "f" * 101}, "first_name"),
    ("last_name past its maximum", {"last_name": "l" * 101}, "last_name"),
    ("nul in last_name", {"last_name": NUL}, "last_name"),
    ("phone past its maximum", {"phone": "1" * 21}, "phone"),
    ("nul in phone", {"phone": f"+1{NUL}"}, "phone"),
]


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in CUSTOMER_REFUSED], ids=_ids(CUSTOMER_REFUSED))
async def test_create_customer_refuses(
    client: TenantClient, shared: Database, fields: dict[str, Any], field: str
) -> None:
    before = await _written(shared, client.tenant_id)
    body = {"email": random_email()} | fields
    assert_problem(await client.post("/v1/customers", json=body), 422, field)
    assert await _written(shared, client.tenant_id) == before


async def test_customer_fields_at_their_maximum(client: TenantClient) -> None:
    email = uuid.uuid4().hex + "e" * (255 - 32 - 12) + "@example.com"
    body = {"email": email, "first_name": "f" * 100, "last_name": "l" * 100, "phone": "1" * 20}
    response = await client.post("/v1/customers", json=body)
    assert response.status_code == 201, response.text


def _order(client: TenantClient, **fields: Any) -> dict[str, Any]:
    items = [{"product_id": str(client.products["lamp"]), "quantity": 1}]
    return {"customer_email": random_email(), "items": items} | fields


def _lines(*lines: tuple[str, Any]) -> list[dict[str, Any]]:
    """Order items from (product key or raw id, quantity) pairs; resolved against the client."""
    return [{"product_id": p, "quantity": q} for p, q in lines]


ORDER_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("nul in customer_email", {"customer_email": f"b{NUL}@example.com"}, "customer_email"),
    ("customer_email past its maximum", {"customer_email": "e" * 244 + "@example.com"}, "customer_email"),
    ("null customer_email", {"customer_email": None}, "customer_email"),
    ("null items", {"items": None}, "items"),
    ("no items", {"items": []}, "items"),
    ("too many items", {"items": _lines(*[("lamp", 1)] * 101)}, "items"),
    ("quantity 0", {"items": _lines(("lamp", 0))}, "items.0.quantity"),
    ("quantity negative", {"items": _lines(("lamp", -1))}, "items.0.quantity"),
    ("quantity past its maximum", {"items": _lines(("lamp", 10_001))}, "items.0.quantity"),
    ("quantity past int64", {"items": _lines(("lamp", INT64_MAX + 1))}, "items.0.quantity"),
    ("null quantity", {"items": _lines(("lamp", None))}, "items.0.quantity"),
    ("product_id not a uuid", {"items": _lines(("x", 1))}, "items.0.product_id"),
    ("nul in product_id", {"items": _lines((f"{uuid.uuid4()}{NUL}", 1))}, "items.0.product_id"),
    ("nul in currency", {"currency": f"US{NUL}"}, "currency"),
    ("currency too short", {"currency": "US"}, "currency"),
    ("null currency", {"currency": None}, "currency"),
    ("nul in shipping_address value", {"shipping_address": {"city": f"Pa{NUL}ris"}}, "shipping_address"),
    ("nul in shipping_address key", {"shipping_address": {f"ci{NUL}ty": "Paris"}}, "shipping_address"),
    ("nul deep in billing_address", {"billing_address": deep(8, [f"{NUL}"])}, "billing_address"),
    ("shipping_address too deep", {"shipping_address": deep(MAX_JSON_DEPTH + 1)}, "shipping_address"),
    ("billing_address integer past int64", {"billing_address": {"zip": INT64_MAX + 1}}, "billing_address"),
    ("shipping_address past its size", {"shipping_address": big_object(MAX_JSON_BYTES)}, "shipping_address"),
    ("shipping_address not an object", {"shipping_address": "Paris"}, "shipping_address"),
    ("nul in notes", {"notes": f"leave at door{NUL}"}, "notes"),
    ("notes past its maximum", {"notes": "n" * 10_001}, "notes"),
    # Computed totals: 101 x 99,999,999.99 overflows numeric(12, 2) on one line...
    ("line total past the maximum", {"items": _lines(("dearest", 101))}, "items"),
    # ... and 60 + 50 of them only when summed (each line fits).
    ("total past the maximum only when summed", {"items": _lines(("dearest", 60), ("dearest", 50))}, "items"),
]


def _resolve(client: TenantClient, body: dict[str, Any]) -> dict[str, Any]:
    items = body.get("items")
    if isinstance(items, list):
        body = body | {
            "items": [
                item | {"product_id": str(client.products.get(item["product_id"], item["product_id"]))}
                for item in items
            ]
        }
    return body


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in ORDER_REFUSED], ids=_ids(ORDER_REFUSED))
async def test_place_order_refuses(
    client: TenantClient, shared: Database, fields: dict[str, Any], field: str
) -> None:
    before = await _written(shared, client.tenant_id)
    body = _resolve(client, _order(client, **fields))
    assert_problem(await client.post("/v1/orders", json=body), 422, field)
    assert await _written(shared, client.tenant_id) == before


async def test_idempotency_key_past_its_maximum_is_refused(client: TenantClient, shared: Database) -> None:
    before = await _written(shared, client.tenant_id)
    response = await client.post("/v1/orders", json=_order(client), headers={"Idempotency-Key": "k" * 256})
    assert_problem(response, 422, "Idempotency-Key")
    assert await _written(shared, client.tenant_id) == before


async def test_totals_at_the_maximum_and_a_saturated_customer_can_still_order(
    make_tenant: MakeTenant, orders_app: OrdersApp, feed: ProductFeed, shared: Database
) -> None:
    """Two orders of the highest total for one customer: `total_spent` would overflow numeric(12, 2) on
    the second; it saturates at the column's maximum instead, and the customer goes on ordering."""
    tenant_id = await make_tenant("shared")  # fresh: its first order takes the step-by-step path
    dearest, lamp = product_event(tenant_id, price=MAX_PRICE), product_event(tenant_id, price="9.99")
    await feed.seed(tenant_id, dearest, lamp)
    client = TenantClient(orders_app.http, tenant_id, "shared")
    email = random_email()
    assert (await client.post("/v1/customers", json={"email": email})).status_code == 201
    largest = [{"product_id": str(ProductData.model_validate(dearest.data).product_id), "quantity": 100}]
    for _ in range(2):
        response = await client.post("/v1/orders", json={"customer_email": email, "items": largest})
        assert response.status_code == 201, response.text
        assert Decimal(response.json()["total_amount"]) == Decimal("9999999999.00")
    small = [{"product_id": str(ProductData.model_validate(lamp.data).product_id), "quantity": 1}]
    response = await client.post("/v1/orders", json={"customer_email": email, "items": small})
    assert response.status_code == 201, response.text
    customer = await shared.connection.fetchrow(
        "SELECT total_orders, total_spent FROM customers WHERE tenant_id = $1 AND email = $2",
        tenant_id,
        email,
    )
    assert (customer["total_orders"], customer["total_spent"]) == (3, MAX_AMOUNT)


@pytest.fixture(scope="module")
async def placed(client: TenantClient) -> dict[str, Any]:
    response = await client.post("/v1/orders", json=_order(client))
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


@pytest.mark.parametrize(
    "status", [None, "lost", f"confirmed{NUL}", 1], ids=["null", "unknown", "nul", "not a string"]
)
async def test_update_order_refuses(
    client: TenantClient, shared: Database, placed: dict[str, Any], status: Any
) -> None:
    order_id = uuid.UUID(placed["id"])
    query = "SELECT * FROM orders WHERE tenant_id = $1 AND id = $2"
    row = dict(await shared.connection.fetchrow(query, client.tenant_id, order_id))
    before = await _written(shared, client.tenant_id)
    assert_problem(await client.patch(f"/v1/orders/{order_id}", json={"status": status}), 422, "status")
    assert_problem(await client.patch(f"/v1/orders/{order_id}", json={}), 422, "status")
    assert dict(await shared.connection.fetchrow(query, client.tenant_id, order_id)) == row
    assert await _written(shared, client.tenant_id) == before


LIST_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("unknown status", {"status": "lost"}, "status"),
    ("nul in status", {"status": f"pending{NUL}"}, "status"),
    ("nul in customer_email", {"customer_email": f"a{NUL}@example.com"}, "customer_email"),
    ("customer_email past its maximum", {"customer_email": "e" * 256}, "customer_email"),
    ("limit 0", {"limit": 0}, "limit"),
    ("limit past 200", {"limit": 201}, "limit"),
    ("limit past int64", {"limit": 2**64}, "limit"),
]


@pytest.mark.parametrize(("params", "field"), [c[1:] for c in LIST_REFUSED], ids=_ids(LIST_REFUSED))
async def test_list_refuses(client: TenantClient, params: dict[str, Any], field: str) -> None:
    assert_problem(await client.get("/v1/orders", params=params), 422, field)


@pytest.mark.parametrize(("case", "cursor"), tampered_cursors(), ids=_ids(tampered_cursors()))
async def test_tampered_cursor_is_a_400_naming_cursor(client: TenantClient, case: str, cursor: str) -> None:
    assert_problem(await client.get("/v1/orders", params={"cursor": cursor}), 400, "cursor")


async def test_bodies_over_the_limit_are_413_with_or_without_content_length(
    client: TenantClient, shared: Database
) -> None:
    before = await _written(shared, client.tenant_id)
    body = json_bytes(_order(client, notes="n" * MAX_BODY))
    headers = {"content-type": "application/json"}
    assert_problem(await client.post("/v1/orders", content=body, headers=headers), 413)
    streamed = await client.post("/v1/orders", content=chunked(body), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413)
    assert await _written(shared, client.tenant_id) == before
