"""The catalog's HTTP API (CONTRACT.md §3), run against a tenant on each placement."""

from __future__ import annotations

import base64
import json
import secrets
import string
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from catalog.app import create_app

from tests.integration.catalog.conftest import (
    TENANT_HEADER,
    CatalogClient,
    catalog_settings,
    new_tenant,
)
from tests.support.apps import serve

PROBLEM = "application/problem+json"


def word() -> str:
    """A random lowercase word: a search term no other test uses."""
    return "w" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:12]}"


def product(**overrides: Any) -> dict[str, Any]:
    return {"name": "Desk lamp", "price": "9.99", "sku": sku()} | overrides


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    return body


async def create(client: CatalogClient, **overrides: Any) -> dict[str, Any]:
    response = await client.http.post("/v1/products", json=product(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def category(client: CatalogClient, **overrides: Any) -> dict[str, Any]:
    body = {"name": "Lighting", "slug": f"c-{uuid.uuid4().hex[:12]}"} | overrides
    response = await client.http.post("/v1/categories", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def all_pages(client: CatalogClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = params | ({"cursor": cursor} if cursor else {})
        response = await client.http.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


# --- products -------------------------------------------------------------------------------------


async def test_create_and_get_product(catalog_client: CatalogClient) -> None:
    lighting = await category(catalog_client)
    body = product(
        description="Warm light",
        price=9.99,
        compare_price="12.50",
        cost_price="4",
        status="active",
        inventory={"quantity": 5},
        seo={"title": "Lamp"},
        attributes={"color": "red"},
        category_id=lighting["id"],
    )
    response = await catalog_client.http.post("/v1/products", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {
        "id", "name", "description", "sku", "price", "compare_price", "cost_price", "status",
        "inventory", "seo", "attributes", "category_id", "created_at", "updated_at",
    }  # fmt: skip
    # Decimals travel as strings with their two places.
    assert (created["price"], created["compare_price"], created["cost_price"]) == ("9.99", "12.50", "4.00")
    assert created["status"] == "active"
    assert created["category_id"] == lighting["id"]
    assert created["sku"] == body["sku"]
    datetime.fromisoformat(created["created_at"])

    fetched = await catalog_client.http.get(f"/v1/products/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_create_minimal_product_has_defaults(catalog_client: CatalogClient) -> None:
    response = await catalog_client.http.post("/v1/products", json={"name": "Plain", "price": 1})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "draft"
    assert created["price"] == "1.00"
    for name in ("sku", "description", "compare_price", "cost_price", "inventory", "seo", "attributes"):
        assert created[name] is None
    assert created["category_id"] is None


async def test_duplicate_sku_is_409(catalog_client: CatalogClient) -> None:
    first = await create(catalog_client)
    response = await catalog_client.http.post("/v1/products", json=product(sku=first["sku"]))
    body = assert_problem(response, 409)
    assert "sku" in body["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": "-1"}, "price"),
        ({"price": "1.999"}, "price"),
        ({"price": "123456789.00"}, "price"),
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"sku": "s" * 101}, "sku"),
        ({"status": "gone"}, "status"),
        ({"inventory": [1, 2]}, "inventory"),
        ({"unknown": 1}, "unknown"),
        ({"category_id": "not-a-uuid"}, "category_id"),
    ],
)
async def test_invalid_product_is_422_naming_the_field(
    catalog_client: CatalogClient, change: dict[str, Any], field: str
) -> None:
    response = await catalog_client.http.post("/v1/products", json=product(**change))
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == field


async def test_missing_required_field_is_422(catalog_client: CatalogClient) -> None:
    response = await catalog_client.http.post("/v1/products", json={"name": "No price"})
    assert assert_problem(response, 422)["errors"][0]["field"] == "price"


async def test_unknown_category_is_422(catalog_client: CatalogClient) -> None:
    response = await catalog_client.http.post("/v1/products", json=product(category_id=str(uuid.uuid4())))
    assert assert_problem(response, 422)["errors"][0]["field"] == "category_id"


async def test_jsonb_round_trips_unchanged(catalog_client: CatalogClient) -> None:
    inventory = {"quantity": 12, "warehouses": [{"id": "w1", "on_hand": 7}, {"id": "w2", "on_hand": 5}]}
    seo = {"title": "Lámpara — ünïcødé ✓ 灯", "keywords": ["desk", "light"], "empty": {}}
    attributes = {
        "nested": {"deeper": {"deepest": [1, 2.5, -3, True, None, "x"]}},
        "big": 9_223_372_036_854_775_807,  # int64 max: larger integers are refused (servicekit.validation)
        "ratio": 0.125,
        "flag": False,
        "nothing": None,
        "emoji": "🛋️",
    }
    created = await create(catalog_client, inventory=inventory, seo=seo, attributes=attributes)
    fetched = (await catalog_client.http.get(f"/v1/products/{created['id']}")).json()
    for got in (created, fetched):
        assert got["inventory"] == inventory
        assert got["seo"] == seo
        assert got["attributes"] == attributes


async def test_patch_is_partial(catalog_client: CatalogClient) -> None:
    created = await create(catalog_client, description="Before", attributes={"a": 1}, status="draft")
    response = await catalog_client.http.patch(
        f"/v1/products/{created['id']}", json={"price": "19.90", "description": None, "status": "active"}
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["price"] == "19.90"
    assert patched["description"] is None
    assert patched["status"] == "active"
    unchanged = ("name", "sku", "attributes", "created_at", "category_id", "inventory")
    assert {k: patched[k] for k in unchanged} == {k: created[k] for k in unchanged}
    assert datetime.fromisoformat(patched["updated_at"]) > datetime.fromisoformat(created["updated_at"])
    assert (await catalog_client.http.get(f"/v1/products/{created['id']}")).json() == patched


async def test_patch_errors(catalog_client: CatalogClient) -> None:
    taken = await create(catalog_client)
    mine = await create(catalog_client)
    path = f"/v1/products/{mine['id']}"
    assert_problem(await catalog_client.http.patch(path, json={"sku": taken["sku"]}), 409)
    body = assert_problem(await catalog_client.http.patch(path, json={"name": None}), 422)
    assert body["errors"][0]["field"] == "name"
    body = assert_problem(await catalog_client.http.patch(path, json={"category_id": str(uuid.uuid4())}), 422)
    assert body["errors"][0]["field"] == "category_id"
    assert_problem(await catalog_client.http.patch(path, json={"id": str(uuid.uuid4())}), 422)
    unknown = f"/v1/products/{uuid.uuid4()}"
    assert_problem(await catalog_client.http.patch(unknown, json={"name": "x"}), 404)
    assert (await catalog_client.http.get(path)).json() == mine  # nothing changed


async def test_delete_is_soft(catalog_client: CatalogClient) -> None:
    tag = word()
    created = await create(catalog_client, name=f"Doomed {tag}")
    path = f"/v1/products/{created['id']}"
    response = await catalog_client.http.delete(path)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await catalog_client.http.get(path), 404)
    assert_problem(await catalog_client.http.patch(path, json={"name": "Back"}), 404)
    assert_problem(await catalog_client.http.delete(path), 404)
    assert (await catalog_client.http.get("/v1/products", params={"q": tag})).json()["items"] == []


async def test_unknown_product_is_404(catalog_client: CatalogClient) -> None:
    body = assert_problem(await catalog_client.http.get(f"/v1/products/{uuid.uuid4()}"), 404)
    assert body["instance"].startswith("/v1/products/")


# --- bulk -----------------------------------------------------------------------------------------


async def test_bulk_create(catalog_client: CatalogClient) -> None:
    items = [product(name=f"Bulk {i}", price=f"{i}.50") for i in range(3)]
    response = await catalog_client.http.post("/v1/products/bulk", json={"items": items})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] == 3
    assert len(body["ids"]) == 3
    for item, product_id in zip(items, body["ids"], strict=True):
        fetched = (await catalog_client.http.get(f"/v1/products/{product_id}")).json()
        assert (fetched["name"], fetched["sku"], fetched["price"]) == (
            item["name"],
            item["sku"],
            item["price"],
        )


async def test_bulk_is_all_or_nothing(catalog_client: CatalogClient) -> None:
    existing = await create(catalog_client)
    tag = word()
    twice = sku()
    batches = [
        ([product(name=tag, sku=twice), product(name=tag), product(name=tag, sku=twice)], 409),
        ([product(name=tag), product(name=tag, sku=existing["sku"])], 409),
        ([product(name=tag), product(name=tag, category_id=str(uuid.uuid4()))], 422),
    ]
    for items, status in batches:
        response = await catalog_client.http.post("/v1/products/bulk", json={"items": items})
        assert_problem(response, status)
    assert (await catalog_client.http.get("/v1/products", params={"q": tag})).json()["items"] == []


async def test_bulk_limits(catalog_client: CatalogClient) -> None:
    too_many = [{"name": "n", "price": 1} for _ in range(1001)]
    body = assert_problem(await catalog_client.http.post("/v1/products/bulk", json={"items": too_many}), 422)
    assert body["errors"][0]["field"] == "items"
    body = assert_problem(await catalog_client.http.post("/v1/products/bulk", json={"items": []}), 422)
    assert body["errors"][0]["field"] == "items"
    bad = {"items": [product(), product(price="-5")]}
    body = assert_problem(await catalog_client.http.post("/v1/products/bulk", json=bad), 422)
    assert body["errors"][0]["field"] == "items.1.price"


async def test_bulk_of_a_thousand(catalog_client: CatalogClient) -> None:
    tag = word()
    items = [{"name": f"{tag} {i}", "price": "1.00", "sku": f"{tag}-{i}"} for i in range(1000)]
    response = await catalog_client.http.post("/v1/products/bulk", json={"items": items})
    assert response.status_code == 201, response.text
    assert response.json()["created"] == 1000
    listed = await all_pages(catalog_client, "/v1/products", q=tag, limit=200)
    assert len(listed) == 1000


# --- listing --------------------------------------------------------------------------------------


async def test_pagination_with_cursor(catalog_client: CatalogClient) -> None:
    shelf = await category(catalog_client)
    singles = [await create(catalog_client, category_id=shelf["id"]) for _ in range(2)]
    # One bulk: the same created_at for all five, so the id breaks the ties.
    items = [product(category_id=shelf["id"]) for _ in range(5)]
    bulk = (await catalog_client.http.post("/v1/products/bulk", json={"items": items})).json()
    await create(catalog_client, category_id=shelf["id"], status="archived")
    await catalog_client.http.delete(f"/v1/products/{singles[0]['id']}")

    listed = await all_pages(catalog_client, "/v1/products", category_id=shelf["id"], limit=2)
    ids = [p["id"] for p in listed]
    assert len(ids) == len(set(ids)) == 7
    assert singles[0]["id"] not in ids
    assert set(bulk["ids"]) <= set(ids)
    keys = [(p["created_at"], uuid.UUID(p["id"])) for p in listed]
    assert keys == sorted(keys, reverse=True)

    first = (await catalog_client.http.get("/v1/products", params={"category_id": shelf["id"]})).json()
    assert [p["id"] for p in first["items"]] == ids
    assert first["next_cursor"] is None

    archived = await all_pages(catalog_client, "/v1/products", category_id=shelf["id"], status="archived")
    assert len(archived) == 1


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "eyJrIjoicmFuayIsInYiOlsxLCJ4Il19",  # base64 JSON, but not a product page's
        "e30",  # {}
        "WyJwcm9kdWN0cyIsIjAwMDEtMDEtMDFUMDA6MDA6MDArMDU6MDAiLCIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAiXQ",
    ],
)
async def test_bad_cursors_are_400_naming_cursor(catalog_client: CatalogClient, cursor: str) -> None:
    body = assert_problem(await catalog_client.http.get("/v1/products", params={"cursor": cursor}), 400)
    assert body["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"status": "gone"},
    ],
)
async def test_bad_listing_parameters_are_422(catalog_client: CatalogClient, params: dict[str, Any]) -> None:
    body = assert_problem(await catalog_client.http.get("/v1/products", params=params), 422)
    assert body["errors"][0]["field"] == next(iter(params))


def _cursor(*document: Any) -> str:
    """A cursor as the codec writes them (base64url JSON), with whatever a tamperer puts in."""
    return base64.urlsafe_b64encode(json.dumps(list(document)).encode()).decode().rstrip("=")


@pytest.mark.parametrize("position", [2**40, int("9" * 400), -(2**31) - 1, 1.5, "3", True], ids=str)
async def test_out_of_range_category_cursors_are_400(catalog_client: CatalogClient, position: Any) -> None:
    """The position reaches SQL as an int4 bind parameter: out of range is refused before it."""
    response = await catalog_client.http.get(
        "/v1/categories", params={"cursor": _cursor("categories", position, "a")}
    )
    assert assert_problem(response, 400)["errors"][0]["field"] == "cursor"


async def test_a_cursor_is_bound_to_its_listing(catalog_client: CatalogClient) -> None:
    tag = word()
    for _ in range(3):
        await create(catalog_client, name=tag)
    searched = (await catalog_client.http.get("/v1/products", params={"q": tag, "limit": 1})).json()
    assert searched["next_cursor"]
    response = await catalog_client.http.get("/v1/products", params={"cursor": searched["next_cursor"]})
    assert assert_problem(response, 400)["errors"][0]["field"] == "cursor"


async def test_full_text_search_ranks_best_first(catalog_client: CatalogClient) -> None:
    tag, other = word(), word()
    best = await create(catalog_client, name=f"{tag} {tag}", description=f"{tag} {tag} {tag}")
    good = await create(catalog_client, name=f"Lamp {tag}", description=f"{tag} and more")
    weak = await create(
        catalog_client, name="Plain lamp", description=f"with {tag} once among many words here"
    )
    await create(catalog_client, name=f"Unrelated {other}", description="nothing to see")
    deleted = await create(catalog_client, name=f"{tag} {tag} {tag} {tag}")
    await catalog_client.http.delete(f"/v1/products/{deleted['id']}")

    page = (await catalog_client.http.get("/v1/products", params={"q": tag.upper()})).json()
    assert [p["id"] for p in page["items"]] == [best["id"], good["id"], weak["id"]]
    # Keyset paging over the ranking gives the same order, one at a time.
    paged = await all_pages(catalog_client, "/v1/products", q=tag, limit=1)
    assert [p["id"] for p in paged] == [best["id"], good["id"], weak["id"]]
    # All words must match (plainto_tsquery ANDs them), in name or description.
    both = (await catalog_client.http.get("/v1/products", params={"q": f"lamp {tag}"})).json()
    assert {p["id"] for p in both["items"]} == {good["id"], weak["id"]}
    filtered = await all_pages(catalog_client, "/v1/products", q=tag, status="draft")
    assert len(filtered) == 3


# --- categories -----------------------------------------------------------------------------------


async def test_categories(catalog_client: CatalogClient) -> None:
    root = await category(catalog_client, name="Home", position=1, description="All of it")
    child = await category(catalog_client, name="Lamps", parent_id=root["id"], position=2)
    assert set(root) == {
        "id",
        "name",
        "slug",
        "description",
        "parent_id",
        "position",
        "created_at",
        "updated_at",
    }
    assert root["parent_id"] is None
    assert root["description"] == "All of it"
    assert child["parent_id"] == root["id"]

    fetched = await catalog_client.http.get(f"/v1/categories/{child['id']}")
    assert fetched.json() == child

    taken = await catalog_client.http.post("/v1/categories", json={"name": "Again", "slug": root["slug"]})
    assert_problem(taken, 409)
    orphan = {"name": "Orphan", "slug": f"c-{uuid.uuid4().hex[:12]}", "parent_id": str(uuid.uuid4())}
    body = assert_problem(await catalog_client.http.post("/v1/categories", json=orphan), 422)
    assert body["errors"][0]["field"] == "parent_id"
    body = assert_problem(await catalog_client.http.post("/v1/categories", json={"name": "No slug"}), 422)
    assert body["errors"][0]["field"] == "slug"

    listed = await all_pages(catalog_client, "/v1/categories", limit=1)
    ids = [c["id"] for c in listed]
    assert len(ids) == len(set(ids))
    assert {root["id"], child["id"]} <= set(ids)
    keys = [(c["position"], c["slug"]) for c in listed]
    assert keys == sorted(keys)


async def test_category_patch_and_cycles(catalog_client: CatalogClient) -> None:
    a = await category(catalog_client, name="A")
    b = await category(catalog_client, name="B", parent_id=a["id"])
    c = await category(catalog_client, name="C", parent_id=b["id"])
    other = await category(catalog_client, name="Other")

    for moved, parent in ((a, c), (a, b), (b, c), (a, a)):
        response = await catalog_client.http.patch(
            f"/v1/categories/{moved['id']}", json={"parent_id": parent["id"]}
        )
        body = assert_problem(response, 409)
        assert body["field"] == "parent_id"

    response = await catalog_client.http.patch(
        f"/v1/categories/{c['id']}", json={"parent_id": a["id"], "name": "C2", "position": 3}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["parent_id"], response.json()["name"], response.json()["position"]) == (
        a["id"],
        "C2",
        3,
    )
    response = await catalog_client.http.patch(f"/v1/categories/{a['id']}", json={"parent_id": None})
    assert response.status_code == 200
    response = await catalog_client.http.patch(f"/v1/categories/{b['id']}", json={"slug": other["slug"]})
    assert_problem(response, 409)
    response = await catalog_client.http.patch(
        f"/v1/categories/{b['id']}", json={"parent_id": str(uuid.uuid4())}
    )
    assert assert_problem(response, 422)["errors"][0]["field"] == "parent_id"
    response = await catalog_client.http.patch(f"/v1/categories/{uuid.uuid4()}", json={"name": "x"})
    assert_problem(response, 404)
    assert (await catalog_client.http.get(f"/v1/categories/{b['id']}")).json() == b


# --- tenant header, tenant state, body limit --------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {TENANT_HEADER: "not-a-uuid"}, {TENANT_HEADER: ""}])
async def test_tenant_header_missing_or_malformed_is_400(
    anonymous: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for response in (
        await anonymous.get("/v1/products", headers=headers),
        await anonymous.post("/v1/products", json=product(), headers=headers),
        await anonymous.get("/v1/categories", headers=headers),
    ):
        assert TENANT_HEADER in assert_problem(response, 400)["detail"]


async def test_unknown_tenant_is_404(anonymous: httpx.AsyncClient) -> None:
    headers = {TENANT_HEADER: str(uuid.uuid4())}
    assert_problem(await anonymous.get("/v1/products", headers=headers), 404)
    assert_problem(await anonymous.post("/v1/products", json=product(), headers=headers), 404)


@pytest.mark.parametrize("status", ["suspended", "deleted"])
async def test_unavailable_tenant_is_403(
    anonymous: httpx.AsyncClient, stack_env: dict[str, str], status: str
) -> None:
    tenant_id = await new_tenant(stack_env, "shared", [], status=status)
    headers = {TENANT_HEADER: str(tenant_id)}
    assert_problem(await anonymous.get("/v1/products", headers=headers), 403)
    assert_problem(await anonymous.post("/v1/products", json=product(), headers=headers), 403)
    assert_problem(
        await anonymous.post("/v1/categories", json={"name": "c", "slug": "c"}, headers=headers), 403
    )


async def test_body_over_the_limit_is_413(stack_env: dict[str, str]) -> None:
    settings = catalog_settings(stack_env, max_body_bytes=512)
    async with serve(create_app(settings)) as client:
        headers = {TENANT_HEADER: str(uuid.uuid4())}
        response = await client.post("/v1/products", json=product(description="x" * 1000), headers=headers)
        assert_problem(response, 413)
        response = await client.get("/healthz")
        assert response.status_code == 200


async def test_health_and_docs(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/healthz")).status_code == 200
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert (await anonymous.get("/openapi.json")).json()["paths"]["/v1/products"]
    asyncapi = (await anonymous.get("/asyncapi.json")).json()
    assert "catalog.products.v1" in str(asyncapi["channels"])
