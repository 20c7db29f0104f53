"""The orders HTTP API against real PostgreSQL and Kafka; every test runs for a shared and a dedicated
tenant (the module's `placement`)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from orders.app import create_app

from tests.integration.orders.conftest import (
    TENANT_HEADER,
    MakeTenant,
    NewClient,
    OrdersApp,
    TenantClient,
    orders_settings,
    random_email,
)

PROBLEM = "application/problem+json"


def fields(response: httpx.Response) -> list[str]:
    return [e["field"] for e in response.json().get("errors", [])]


def order_body(client: TenantClient, email: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "customer_email": email or random_email(),
        "items": [
            {"product_id": str(client.products["lamp"]), "quantity": 2},
            {"product_id": str(client.products["chair"]), "quantity": 1},
        ],
        **extra,
    }


# tenant header (shared by every tenant-scoped route)


async def test_tenant_header_is_required_and_checked(orders_app: OrdersApp, make_tenant: MakeTenant) -> None:
    http = orders_app.http
    missing = await http.get("/v1/orders")
    assert missing.status_code == 400
    assert missing.headers["content-type"].startswith(PROBLEM)
    assert (await http.get("/v1/orders", headers={TENANT_HEADER: "not-a-uuid"})).status_code == 400
    unknown = await http.get("/v1/orders", headers={TENANT_HEADER: str(uuid.uuid4())})
    assert unknown.status_code == 404
    for status in ("suspended", "deleted"):
        tenant_id = await make_tenant("shared", status=status)
        response = await http.post(
            "/v1/customers", json={"email": random_email()}, headers={TENANT_HEADER: str(tenant_id)}
        )
        assert response.status_code == 403, status
        assert response.headers["content-type"].startswith(PROBLEM)


async def test_body_over_the_limit_is_refused(stack_env: dict[str, str]) -> None:
    app = create_app(orders_settings(stack_env, max_body_bytes=64))
    try:
        # The limit is checked before routing: no broker or database is needed to see it.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            response = await http.post(
                "/v1/orders",
                headers={TENANT_HEADER: str(uuid.uuid4())},
                json={"customer_email": random_email(), "notes": "x" * 200, "items": []},
            )
        assert response.status_code == 413
        assert response.headers["content-type"].startswith(PROBLEM)
    finally:
        await app.state.tdb.close()


# customers


async def test_create_and_get_customer(tenant: TenantClient) -> None:
    email = random_email()
    created = await tenant.post(
        "/v1/customers", json={"email": email.upper(), "first_name": "Ada", "phone": "+44 20 1234"}
    )
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["email"] == email
    assert customer["first_name"] == "Ada"
    assert customer["total_orders"] == 0
    assert customer["total_spent"] == "0.00"

    fetched = await tenant.get(f"/v1/customers/{customer['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == customer

    taken = await tenant.post("/v1/customers", json={"email": email})
    assert taken.status_code == 409
    assert taken.headers["content-type"].startswith(PROBLEM)

    assert (await tenant.get(f"/v1/customers/{uuid.uuid4()}")).status_code == 404
    invalid = await tenant.post("/v1/customers", json={"email": "not-an-email"})
    assert invalid.status_code == 422
    assert "email" in fields(invalid)


async def test_customer_emails_are_per_tenant(tenant: TenantClient, new_tenant: NewClient) -> None:
    email = random_email()
    other = await new_tenant()
    assert (await tenant.post("/v1/customers", json={"email": email})).status_code == 201
    assert (await other.post("/v1/customers", json={"email": email})).status_code == 201


# placing orders


async def test_place_order(tenant: TenantClient) -> None:
    email = random_email()
    body = order_body(tenant, email, currency="eur", shipping_address={"city": "Lyon"}, notes="by noon")
    response = await tenant.post("/v1/orders", json=body)
    assert response.status_code == 201, response.text
    order = response.json()
    assert int(order["order_number"]) > 1000
    assert order["customer_email"] == email
    assert order["status"] == "pending"
    assert order["payment_status"] == "pending"
    assert order["fulfillment_status"] == "unfulfilled"
    assert order["currency"] == "EUR"
    assert order["subtotal_amount"] == "65.48"  # 2 x 9.99 + 45.50
    assert order["tax_amount"] == order["shipping_amount"] == order["discount_amount"] == "0.00"
    assert order["total_amount"] == "65.48"
    assert order["items"] == [
        {
            "product_id": str(tenant.products["lamp"]),
            "name": "Lamp",
            "sku": order["items"][0]["sku"],
            "quantity": 2,
            "unit_price": "9.99",
            "line_total": "19.98",
        },
        {
            "product_id": str(tenant.products["chair"]),
            "name": "Chair",
            "sku": order["items"][1]["sku"],
            "quantity": 1,
            "unit_price": "45.50",
            "line_total": "45.50",
        },
    ]
    assert order["shipping_address"] == {"city": "Lyon"}
    assert order["billing_address"] is None
    assert order["notes"] == "by noon"
    assert order["created_at"] == order["updated_at"]

    fetched = await tenant.get(f"/v1/orders/{order['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == order

    # The customer was created by the order, with its aggregates.
    customer = (await tenant.get(f"/v1/customers/{order['customer_id']}")).json()
    assert customer["email"] == email
    assert customer["total_orders"] == 1
    assert customer["total_spent"] == "65.48"
    assert customer["last_order_date"] is not None

    # A second order of the same customer counts on the same row.
    second = await tenant.post(
        "/v1/orders", json={"customer_email": email, "items": [{"product_id": str(tenant.products["lamp"])}]}
    )
    assert second.status_code == 422  # quantity is required
    second = await tenant.post(
        "/v1/orders",
        json={
            "customer_email": email,
            "items": [{"product_id": str(tenant.products["lamp"]), "quantity": 1}],
        },
    )
    assert second.status_code == 201
    assert second.json()["customer_id"] == order["customer_id"]
    assert int(second.json()["order_number"]) > int(order["order_number"])
    customer = (await tenant.get(f"/v1/customers/{order['customer_id']}")).json()
    assert customer["total_orders"] == 2
    assert customer["total_spent"] == "75.47"


async def test_order_for_an_existing_customer(tenant: TenantClient) -> None:
    email = random_email()
    customer = (await tenant.post("/v1/customers", json={"email": email})).json()
    order = (await tenant.post("/v1/orders", json=order_body(tenant, email))).json()
    assert order["customer_id"] == customer["id"]


@pytest.mark.parametrize("product", ["unknown", "draft", "gone"])
async def test_unavailable_product_is_refused_and_nothing_written(tenant: TenantClient, product: str) -> None:
    email = random_email()
    bad = tenant.products.get(product) or uuid.uuid4()
    body = order_body(tenant, email)
    body["items"].append({"product_id": str(bad), "quantity": 1})
    response = await tenant.post("/v1/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    assert str(bad) in response.json()["detail"]
    assert fields(response) == ["items.2.product_id"]
    listed = (await tenant.get("/v1/orders", params={"customer_email": email})).json()
    assert listed["items"] == []
    # Nor was the customer created: creating it now works.
    assert (await tenant.post("/v1/customers", json={"email": email})).status_code == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}] * 101}, "items"),
        ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 0}]}, "items.0.quantity"),
        ({"items": [{"product_id": "nope", "quantity": 1}]}, "items.0.product_id"),
        ({"currency": "EURO"}, "currency"),
        ({"customer_email": "nobody"}, "customer_email"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_invalid_order_names_the_field(
    tenant: TenantClient, change: dict[str, Any], field: str
) -> None:
    response = await tenant.post("/v1/orders", json=order_body(tenant) | change)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert field in fields(response)


async def test_get_unknown_order(tenant: TenantClient) -> None:
    assert (await tenant.get(f"/v1/orders/{uuid.uuid4()}")).status_code == 404
    assert (await tenant.get("/v1/orders/not-a-uuid")).status_code == 422


async def test_orders_are_isolated_between_tenants(tenant: TenantClient, new_tenant: NewClient) -> None:
    order = (await tenant.post("/v1/orders", json=order_body(tenant))).json()
    other = await new_tenant()
    assert (await other.get(f"/v1/orders/{order['id']}")).status_code == 404
    assert (await other.get("/v1/orders")).json()["items"] == []
    # Another tenant's product is unknown here.
    response = await other.post(
        "/v1/orders",
        json={
            "customer_email": random_email(),
            "items": [{"product_id": str(tenant.products["lamp"]), "quantity": 1}],
        },
    )
    assert response.status_code == 422


# idempotency


async def test_idempotent_retry_returns_the_first_response(tenant: TenantClient) -> None:
    email = random_email()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await tenant.post("/v1/orders", json=order_body(tenant, email), headers=key)
    again = await tenant.post("/v1/orders", json=order_body(tenant, email), headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    listed = (await tenant.get("/v1/orders", params={"customer_email": email})).json()
    assert [o["id"] for o in listed["items"]] == [first.json()["id"]]
    customer = (await tenant.get(f"/v1/customers/{first.json()['customer_id']}")).json()
    assert customer["total_orders"] == 1

    different = await tenant.post("/v1/orders", json=order_body(tenant, email, notes="changed"), headers=key)
    assert different.status_code == 409
    assert different.headers["content-type"].startswith(PROBLEM)

    too_long = await tenant.post(
        "/v1/orders", json=order_body(tenant), headers={"Idempotency-Key": "k" * 256}
    )
    assert too_long.status_code == 422
    assert fields(too_long) == ["Idempotency-Key"]


async def test_concurrent_duplicates_create_one_order(tenant: TenantClient) -> None:
    email = random_email()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = order_body(tenant, email)
    responses = await asyncio.gather(*(tenant.post("/v1/orders", json=body, headers=key) for _ in range(8)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    listed = (await tenant.get("/v1/orders", params={"customer_email": email})).json()
    assert len(listed["items"]) == 1


async def test_keys_are_per_tenant(tenant: TenantClient, new_tenant: NewClient) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    other = await new_tenant()
    first = await tenant.post("/v1/orders", json=order_body(tenant), headers=key)
    second = await other.post("/v1/orders", json=order_body(other), headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


# concurrency


@pytest.mark.slow
@pytest.mark.parametrize("customers", [1, 50], ids=["one-customer", "fifty-customers"])
async def test_fifty_concurrent_orders_get_gapless_increasing_numbers(
    new_tenant: NewClient, customers: int
) -> None:
    """One customer: every order also contends for the customer's row; fifty customers: only for
    the tenant's order-number sequence."""
    client = await new_tenant()
    emails = [random_email() for _ in range(customers)]
    bodies = [
        {
            "customer_email": emails[i % customers],
            "items": [{"product_id": str(client.products["lamp"]), "quantity": 1 + i % 5}],
        }
        for i in range(50)
    ]
    responses = await asyncio.gather(*(client.post("/v1/orders", json=body) for body in bodies))
    assert [r.status_code for r in responses] == [201] * 50, [
        r.text for r in responses if r.status_code != 201
    ]
    orders = [r.json() for r in responses]
    by_creation = sorted(orders, key=lambda o: (o["created_at"], o["id"]))
    assert [int(o["order_number"]) for o in by_creation] == list(range(1001, 1051))

    by_customer: dict[str, list[dict[str, Any]]] = {}
    for order in orders:
        by_customer.setdefault(order["customer_id"], []).append(order)
    assert len(by_customer) == customers
    for customer_id, placed in by_customer.items():
        customer = (await client.get(f"/v1/customers/{customer_id}")).json()
        assert customer["total_orders"] == len(placed) == 50 // customers
        assert Decimal(customer["total_spent"]) == sum(Decimal(o["total_amount"]) for o in placed)

    # The list (newest first) agrees with the numbers.
    listed: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 20} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/orders", params=params)).json()
        listed += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [int(o["order_number"]) for o in listed] == list(range(1050, 1000, -1))


# listing


async def test_list_orders_filters_and_pages(new_tenant: NewClient) -> None:
    client = await new_tenant()
    alice, bob = random_email(), random_email()
    made = []
    for email in (alice, bob, alice, alice, bob):
        response = await client.post("/v1/orders", json=order_body(client, email))
        made.append(response.json())
    confirmed = made[1]
    assert (
        await client.patch(f"/v1/orders/{confirmed['id']}", json={"status": "confirmed"})
    ).status_code == 200

    everything = (await client.get("/v1/orders")).json()
    assert [o["id"] for o in everything["items"]] == [o["id"] for o in reversed(made)]
    assert everything["next_cursor"] is None

    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/orders", params=params)).json()
        pages.append([o["id"] for o in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [[made[4]["id"], made[3]["id"]], [made[2]["id"], made[1]["id"]], [made[0]["id"]]]

    by_email = (await client.get("/v1/orders", params={"customer_email": alice.upper()})).json()
    assert [o["id"] for o in by_email["items"]] == [made[3]["id"], made[2]["id"], made[0]["id"]]
    by_status = (await client.get("/v1/orders", params={"status": "confirmed"})).json()
    assert [o["id"] for o in by_status["items"]] == [confirmed["id"]]
    both = (await client.get("/v1/orders", params={"status": "pending", "customer_email": bob})).json()
    assert [o["id"] for o in both["items"]] == [made[4]["id"]]

    for cursor in ("garbage!", "WyJ4IiwieSJd"):  # the second: valid base64 of ["x","y"]
        response = await client.get("/v1/orders", params={"cursor": cursor})
        assert response.status_code == 400, cursor
        assert "cursor" in fields(response), cursor
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"status": "lost"}, "status"),
    ]:
        response = await client.get("/v1/orders", params=params)
        assert response.status_code == 422, params
        assert field in fields(response), params


# status transitions


async def test_status_transitions(tenant: TenantClient) -> None:
    order = (await tenant.post("/v1/orders", json=order_body(tenant))).json()
    url = f"/v1/orders/{order['id']}"

    async def move(status: str) -> httpx.Response:
        return await tenant.patch(url, json={"status": status})

    assert (await move("pending")).status_code == 409  # same status
    assert (await move("shipped")).status_code == 409  # skips confirmed
    confirmed = await move("confirmed")
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "confirmed"
    assert confirmed.json()["updated_at"] > order["updated_at"]
    assert (await move("confirmed")).status_code == 409
    assert (await move("pending")).status_code == 409
    assert (await move("shipped")).status_code == 200
    assert (await move("cancelled")).status_code == 409
    assert (await move("delivered")).status_code == 200
    conflict = await move("cancelled")
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith(PROBLEM)
    assert (await tenant.get(url)).json()["status"] == "delivered"

    other = (await tenant.post("/v1/orders", json=order_body(tenant))).json()
    assert (await tenant.patch(f"/v1/orders/{other['id']}", json={"status": "cancelled"})).status_code == 200
    assert (await tenant.patch(f"/v1/orders/{other['id']}", json={"status": "confirmed"})).status_code == 409

    invalid = await tenant.patch(url, json={"status": "teleported"})
    assert invalid.status_code == 422
    assert "status" in fields(invalid)
    assert (await tenant.patch(f"/v1/orders/{uuid.uuid4()}", json={"status": "confirmed"})).status_code == 404


# service endpoints


async def test_health_metrics_and_asyncapi(orders_app: OrdersApp) -> None:
    http = orders_app.http
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
    assert "tenantdb_units_of_work_total" in (await http.get("/metrics")).text
    channels = {c["address"] for c in (await http.get("/asyncapi.json")).json()["channels"].values()}
    assert {"orders.orders.v1", "catalog.products.v1"} <= channels
    assert (await http.get("/docs")).status_code == 200
