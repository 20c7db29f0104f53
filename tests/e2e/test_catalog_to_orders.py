"""Across services: a product created through catalog's API reaches orders through Kafka, and an
order for it is then priced from orders' read model; on both placements."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from catalog.app import create_app as create_catalog
from orders.app import create_app as create_orders

from tests.integration.catalog.conftest import catalog_settings
from tests.integration.orders.conftest import orders_settings
from tests.integration.tenantdb.conftest import Kind, MakeTenant, dedicated_secret
from tests.support.apps import serve


@pytest.mark.parametrize("kind", ["shared", "dedicated"])
async def test_order_for_a_product_created_in_catalog(
    stack_env: dict[str, str], make_tenant: MakeTenant, kind: Kind
) -> None:
    tenant = await make_tenant(kind)
    headers = {"X-Tenant-ID": str(tenant)}
    catalog_app = create_catalog(catalog_settings(stack_env, dedicated_password_secret=dedicated_secret()))
    orders_app = create_orders(orders_settings(stack_env, dedicated_password_secret=dedicated_secret()))
    async with serve(catalog_app) as catalog, serve(orders_app) as orders:
        created = await catalog.post(
            "/v1/products", json={"name": "Lamp", "price": "12.50", "status": "active"}, headers=headers
        )
        assert created.status_code == 201, created.text
        product_id = created.json()["id"]
        order_body = {
            "customer_email": "e2e@example.com",
            "items": [{"product_id": product_id, "quantity": 2}],
        }

        # Until catalog's event has arrived, orders does not know the product (422); poll, no sleeps tuned.
        deadline = time.monotonic() + 30
        while True:
            response = await orders.post("/v1/orders", json=order_body, headers=headers)
            if response.status_code == 201:
                break
            assert response.status_code == 422, response.text
            assert time.monotonic() < deadline, "catalog's product.created never reached orders"
            await asyncio.sleep(0.1)
        order = response.json()
        assert order["total_amount"] == "25.00"
        assert order["items"][0]["unit_price"] == "12.50"

        # A price change flows the same way; new orders use it.
        patched = await catalog.patch(f"/v1/products/{product_id}", json={"price": "10.00"}, headers=headers)
        assert patched.status_code == 200
        deadline = time.monotonic() + 30
        while True:
            response = await orders.post("/v1/orders", json=order_body, headers=headers)
            assert response.status_code == 201, response.text
            if response.json()["total_amount"] == "20.00":
                break
            assert time.monotonic() < deadline, "catalog's product.updated never reached orders"
            await asyncio.sleep(0.1)

        # And a deleted product can no longer be ordered.
        assert (await catalog.delete(f"/v1/products/{product_id}", headers=headers)).status_code == 204
        deadline = time.monotonic() + 30
        while (await orders.post("/v1/orders", json=order_body, headers=headers)).status_code != 422:
            assert time.monotonic() < deadline, "catalog's product.deleted never reached orders"
            await asyncio.sleep(0.1)
    assert uuid.UUID(order["id"])
