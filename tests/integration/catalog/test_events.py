"""Product events on catalog.products.v1 (CONTRACT.md §4), for a tenant on each placement: the
envelope is the contract's, the key is the tenant id, and a refused request emits nothing."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from events import topics

from tests.integration.catalog.conftest import CatalogClient, Record, watch_records

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ENVELOPE = {"event_id", "event_type", "tenant_id", "occurred_at", "schema_version", "producer", "data"}
PRODUCT_DATA = {"product_id", "name", "sku", "price", "status", "deleted", "category_id", "updated_at"}


def product(**overrides: Any) -> dict[str, Any]:
    return {"name": "Lamp", "price": "9.99", "sku": f"SKU-{uuid.uuid4().hex[:12]}"} | overrides


def assert_envelope(record: Record, tenant_id: uuid.UUID) -> dict[str, Any]:
    assert record.key == str(tenant_id).encode()
    event = record.value
    assert set(event) == ENVELOPE
    assert uuid.UUID(event["event_id"])
    assert event["tenant_id"] == str(tenant_id)
    assert RFC3339.match(event["occurred_at"]), event["occurred_at"]
    assert datetime.fromisoformat(event["occurred_at"]).tzinfo is not None
    assert event["schema_version"] == 1
    assert event["producer"] == "catalog"
    assert set(event["data"]) == PRODUCT_DATA
    assert RFC3339.match(event["data"]["updated_at"])
    data: dict[str, Any] = event["data"]
    return data


async def test_product_events_follow_the_contract(fresh_client: CatalogClient) -> None:
    client, tenant = fresh_client, fresh_client.tenant_id
    async with watch_records(client.kafka, topics.PRODUCTS) as seen:
        shelf = (await client.http.post("/v1/categories", json={"name": "Shelf", "slug": "shelf"})).json()
        created = (await client.http.post("/v1/products", json=product(category_id=shelf["id"]))).json()
        path = f"/v1/products/{created['id']}"
        patched = (await client.http.patch(path, json={"price": "12.00", "status": "active"})).json()
        assert (await client.http.delete(path)).status_code == 204
        bulk = (await client.http.post("/v1/products/bulk", json={"items": [product(), product()]})).json()

        records = await seen.wait_for(lambda r: r.value.get("tenant_id") == str(tenant), count=5)

    ids = {r.value["event_id"] for r in records}
    assert len(ids) == 5
    kinds = [(r.value["event_type"], r.value["data"]["product_id"]) for r in records]
    assert kinds == [
        ("product.created", created["id"]),
        ("product.updated", created["id"]),
        ("product.deleted", created["id"]),
        ("product.created", bulk["ids"][0]),
        ("product.created", bulk["ids"][1]),
    ]
    first, update, delete = (assert_envelope(r, tenant) for r in records[:3])
    assert first == {
        "product_id": created["id"],
        "name": "Lamp",
        "sku": created["sku"],
        "price": "9.99",
        "status": "draft",
        "deleted": False,
        "category_id": shelf["id"],
        "updated_at": first["updated_at"],
    }
    assert datetime.fromisoformat(first["updated_at"]) == datetime.fromisoformat(created["updated_at"])
    assert Decimal(update["price"]) == Decimal("12.00")
    assert update["status"] == "active"
    assert datetime.fromisoformat(update["updated_at"]) == datetime.fromisoformat(patched["updated_at"])
    assert delete["deleted"] is True
    # Versions are ordered by updated_at, which only moves forward.
    times = [datetime.fromisoformat(d["updated_at"]) for d in (first, update, delete)]
    assert times == sorted(times)
    assert len(set(times)) == 3
    for record in records[3:]:
        assert_envelope(record, tenant)


async def test_a_refused_request_writes_and_emits_nothing(fresh_client: CatalogClient) -> None:
    client, tenant = fresh_client, fresh_client.tenant_id
    async with watch_records(client.kafka, topics.PRODUCTS) as seen:
        existing = (await client.http.post("/v1/products", json=product(name="Existing"))).json()
        # Wait until the setup's own event went by, so only what follows counts.
        await seen.wait_for(lambda r: r.value.get("data", {}).get("product_id") == existing["id"])
        seen.seen.clear()

        twice = f"SKU-{uuid.uuid4().hex[:12]}"
        refused = [
            await client.http.post("/v1/products", json=product(sku=existing["sku"])),
            await client.http.post("/v1/products", json=product(category_id=str(uuid.uuid4()))),
            await client.http.post("/v1/products", json=product(price="-1")),
            await client.http.post(
                "/v1/products/bulk", json={"items": [product(sku=twice), product(), product(sku=twice)]}
            ),
            await client.http.post(
                "/v1/products/bulk", json={"items": [product(), product(category_id=str(uuid.uuid4()))]}
            ),
            await client.http.patch(
                f"/v1/products/{existing['id']}", json={"category_id": str(uuid.uuid4())}
            ),
            await client.http.patch(f"/v1/products/{uuid.uuid4()}", json={"name": "Ghost"}),
            await client.http.delete(f"/v1/products/{uuid.uuid4()}"),
        ]
        assert [r.status_code for r in refused] == [409, 422, 422, 409, 422, 422, 404, 404]

        # A valid follow-up: once its event arrives, anything the refused requests emitted would have too
        # (one tenant's events are published in order, on one partition).
        sentinel = (await client.http.post("/v1/products", json=product(name="Sentinel"))).json()
        await seen.wait_for(lambda r: r.value.get("data", {}).get("product_id") == sentinel["id"])

    events = [(r.value["event_type"], r.value["data"]["product_id"]) for r in seen.of_tenant(tenant)]
    assert events == [("product.created", sentinel["id"])]
    listed = (await client.http.get("/v1/products")).json()["items"]
    assert {p["id"] for p in listed} == {existing["id"], sentinel["id"]}
    assert (await client.http.get(f"/v1/products/{existing['id']}")).json() == existing
