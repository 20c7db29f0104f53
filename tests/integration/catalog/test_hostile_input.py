"""Hostile input at the catalog's edge, table by table: every refusal is a 4xx problem naming the field,
and nothing is written (no product or category row, no change, no outbox event)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.catalog.conftest import TENANT_HEADER, new_tenant
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

MAX_PRICE = "99999999.99"  # numeric(10, 2)


@pytest.fixture(scope="module")
async def tenant(
    stack_env: dict[str, str],
    catalog_app: tuple[FastAPI, httpx.AsyncClient],
    _dedicated_tenants: list[uuid.UUID],
) -> uuid.UUID:
    return await new_tenant(stack_env, "shared", _dedicated_tenants)


@pytest.fixture(scope="module")
async def client(
    catalog_app: tuple[FastAPI, httpx.AsyncClient], tenant: uuid.UUID
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=catalog_app[0]),
        base_url="http://service",
        headers={TENANT_HEADER: str(tenant)},
    ) as http:
        yield http


async def _written(shared: Database, tenant: uuid.UUID) -> tuple[int, int, int]:
    """(products, categories, outbox events) of the tenant, RLS bypassed."""
    return (
        await shared.count("SELECT count(*) FROM products WHERE tenant_id = $1", tenant),
        await shared.count("SELECT count(*) FROM product_categories WHERE tenant_id = $1", tenant),
        await shared.count("SELECT count(*) FROM outbox WHERE tenant_id = $1", tenant),
    )


def _sku() -> str:
    return f"H-{uuid.uuid4().hex[:12]}"


# (case, fields over a valid product, field named)
PRODUCT_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("nul in name", {"name": f"La{NUL}mp"}, "name"),
    ("nul in sku", {"sku": f"S{NUL}"}, "sku"),
    ("nul in description", {"description": f"a{NUL}b"}, "description"),
    ("nul in attributes value", {"attributes": {"color": f"r{NUL}ed"}}, "attributes"),
    ("nul in attributes key", {"attributes": {f"co{NUL}lor": "red"}}, "attributes"),
    ("nul in nested inventory", {"inventory": {"w": [{"id": f"w{NUL}1"}]}}, "inventory"),
    ("nul in nested seo key", {"seo": deep(10, {NUL: "x"})}, "seo"),
    ("name past its maximum", {"name": "n" * 256}, "name"),
    ("empty name", {"name": ""}, "name"),
    ("sku past its maximum", {"sku": "s" * 101}, "sku"),
    ("description past its maximum", {"description": "d" * 10_001}, "description"),
    ("price past numeric(10,2)", {"price": "100000000.00"}, "price"),
    ("price far past", {"price": 1e10}, "price"),
    ("price as a 400-digit number", {"price": "9" * 400}, "price"),
    ("price negative", {"price": "-0.01"}, "price"),
    ("price with three decimals", {"price": "0.001"}, "price"),
    ("price NaN", {"price": "NaN"}, "price"),
    ("price Infinity", {"price": "Infinity"}, "price"),
    ("price not a number", {"price": "cheap"}, "price"),
    ("compare_price past numeric(10,2)", {"compare_price": "100000000"}, "compare_price"),
    ("cost_price negative", {"cost_price": -1}, "cost_price"),
    ("attributes nested too deep", {"attributes": deep(MAX_JSON_DEPTH + 1)}, "attributes"),
    ("attributes integer past int64", {"attributes": {"n": INT64_MAX + 1}}, "attributes"),
    ("attributes past its size", {"attributes": big_object(MAX_JSON_BYTES)}, "attributes"),
    ("attributes of 1.5 MB", {"attributes": big_object(1_500_000)}, "attributes"),
    ("inventory not an object", {"inventory": "lots"}, "inventory"),
    ("null name", {"name": None}, "name"),
    ("null price", {"price": None}, "price"),
    ("null status", {"status": None}, "status"),
    ("unknown status", {"status": "sold"}, "status"),
    ("category_id not a uuid", {"category_id": "c1"}, "category_id"),
]


def _ids(table: list[Any]) -> list[str]:
    return [row[0] for row in table]


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in PRODUCT_REFUSED], ids=_ids(PRODUCT_REFUSED))
async def test_create_product_refuses(
    client: httpx.AsyncClient, shared: Database, tenant: uuid.UUID, fields: dict[str, Any], field: str
) -> None:
    before = await _written(shared, tenant)
    body = {"name": "Lamp", "price": "9.99", "sku": _sku()} | fields
    assert_problem(await client.post("/v1/products", json=body), 422, field)
    assert await _written(shared, tenant) == before


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in PRODUCT_REFUSED], ids=_ids(PRODUCT_REFUSED))
async def test_bulk_create_refuses_all_for_one_bad_item(
    client: httpx.AsyncClient, shared: Database, tenant: uuid.UUID, fields: dict[str, Any], field: str
) -> None:
    before = await _written(shared, tenant)
    items = [{"name": f"P{i}", "price": "1.00", "sku": _sku()} for i in range(5)]
    items[3] |= fields
    assert_problem(await client.post("/v1/products/bulk", json={"items": items}), 422, f"items.3.{field}")
    assert await _written(shared, tenant) == before


PRODUCT_ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("price at its maximum", {"price": MAX_PRICE, "compare_price": MAX_PRICE, "cost_price": MAX_PRICE}),
    ("price zero", {"price": "0.00"}),
    ("price as a JSON number", {"price": 12.5}),
    ("lengths at their maximum", {"name": "n" * 255, "sku": "s" * 90 + uuid.uuid4().hex[:10]}),
    ("description at its maximum", {"description": "d" * 10_000}),
    ("attributes at the maximum depth", {"attributes": deep(MAX_JSON_DEPTH)}),
    ("attributes at int64 bounds", {"attributes": {"max": INT64_MAX, "min": -(2**63)}}),
]


@pytest.mark.parametrize("fields", [c[1] for c in PRODUCT_ACCEPTED], ids=_ids(PRODUCT_ACCEPTED))
async def test_create_product_accepts_at_the_bounds(
    client: httpx.AsyncClient, shared: Database, tenant: uuid.UUID, fields: dict[str, Any]
) -> None:
    products, _, events = await _written(shared, tenant)
    response = await client.post(
        "/v1/products", json={"name": "Lamp", "price": "9.99", "sku": _sku()} | fields
    )
    assert response.status_code == 201, response.text[:500]
    after = await _written(shared, tenant)
    assert (after[0], after[2]) == (products + 1, events + 1)


async def test_bulk_past_its_maximum_is_refused(
    client: httpx.AsyncClient, shared: Database, tenant: uuid.UUID
) -> None:
    before = await _written(shared, tenant)
    items = [{"name": "P", "price": "1.00"} for _ in range(1001)]
    assert_problem(await client.post("/v1/products/bulk", json={"items": items}), 422, "items")
    assert_problem(await client.post("/v1/products/bulk", json={"items": []}), 422, "items")
    assert await _written(shared, tenant) == before


@pytest.fixture(scope="module")
async def product(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/v1/products", json={"name": "Patched", "price": "5.00", "sku": _sku()})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in PRODUCT_REFUSED], ids=_ids(PRODUCT_REFUSED))
async def test_update_product_refuses(
    client: httpx.AsyncClient,
    shared: Database,
    tenant: uuid.UUID,
    product: dict[str, Any],
    fields: dict[str, Any],
    field: str,
) -> None:
    product_id = uuid.UUID(product["id"])
    query = "SELECT * FROM products WHERE tenant_id = $1 AND id = $2"
    row = dict(await shared.connection.fetchrow(query, tenant, product_id))
    before = await _written(shared, tenant)
    assert_problem(await client.patch(f"/v1/products/{product_id}", json=fields), 422, field)
    assert dict(await shared.connection.fetchrow(query, tenant, product_id)) == row
    assert await _written(shared, tenant) == before


CATEGORY_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("nul in name", {"name": f"Li{NUL}ght"}, "name"),
    ("nul in slug", {"slug": f"sl{NUL}ug"}, "slug"),
    ("nul in description", {"description": NUL}, "description"),
    ("name past its maximum", {"name": "n" * 256}, "name"),
    ("slug past its maximum", {"slug": "s" * 101}, "slug"),
    ("description past its maximum", {"description": "d" * 10_001}, "description"),
    ("position negative", {"position": -1}, "position"),
    ("position past int4", {"position": 2**31}, "position"),
    ("position 2^40", {"position": 2**40}, "position"),
    ("position past int64", {"position": 2**64}, "position"),
    ("null name", {"name": None}, "name"),
    ("null slug", {"slug": None}, "slug"),
    ("null position", {"position": None}, "position"),
    ("parent_id not a uuid", {"parent_id": "root"}, "parent_id"),
]


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in CATEGORY_REFUSED], ids=_ids(CATEGORY_REFUSED))
async def test_create_category_refuses(
    client: httpx.AsyncClient, shared: Database, tenant: uuid.UUID, fields: dict[str, Any], field: str
) -> None:
    before = await _written(shared, tenant)
    body = {"name": "Lighting", "slug": f"c-{uuid.uuid4().hex[:12]}"} | fields
    assert_problem(await client.post("/v1/categories", json=body), 422, field)
    assert await _written(shared, tenant) == before


async def test_category_position_at_int4_maximum(client: httpx.AsyncClient) -> None:
    body = {"name": "Last", "slug": f"c-{uuid.uuid4().hex[:12]}", "position": 2**31 - 1}
    response = await client.post("/v1/categories", json=body)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in CATEGORY_REFUSED], ids=_ids(CATEGORY_REFUSED))
async def test_update_category_refuses(
    client: httpx.AsyncClient, shared: Database, tenant: uuid.UUID, fields: dict[str, Any], field: str
) -> None:
    created = await client.post("/v1/categories", json={"name": "C", "slug": f"c-{uuid.uuid4().hex[:12]}"})
    assert created.status_code == 201, created.text
    category_id = uuid.UUID(created.json()["id"])
    query = "SELECT * FROM product_categories WHERE tenant_id = $1 AND id = $2"
    row = dict(await shared.connection.fetchrow(query, tenant, category_id))
    assert_problem(await client.patch(f"/v1/categories/{category_id}", json=fields), 422, field)
    assert dict(await shared.connection.fetchrow(query, tenant, category_id)) == row


LIST_REFUSED: list[tuple[str, str, dict[str, Any], str]] = [
    ("nul in q", "/v1/products", {"q": f"lamp{NUL}"}, "q"),
    ("q past its maximum", "/v1/products", {"q": "q" * 501}, "q"),
    ("unknown status", "/v1/products", {"status": "sold"}, "status"),
    ("nul in status", "/v1/products", {"status": f"draft{NUL}"}, "status"),
    ("category_id not a uuid", "/v1/products", {"category_id": "x"}, "category_id"),
    ("limit 0", "/v1/products", {"limit": 0}, "limit"),
    ("limit past 200", "/v1/products", {"limit": 201}, "limit"),
    ("limit past int64", "/v1/categories", {"limit": 2**64}, "limit"),
]


@pytest.mark.parametrize(("path", "params", "field"), [c[1:] for c in LIST_REFUSED], ids=_ids(LIST_REFUSED))
async def test_list_refuses(client: httpx.AsyncClient, path: str, params: dict[str, Any], field: str) -> None:
    assert_problem(await client.get(path, params=params), 422, field)


@pytest.mark.parametrize(
    "listing", [{}, {"q": "lamp"}, "categories"], ids=["products", "search", "categories"]
)
@pytest.mark.parametrize(("case", "cursor"), tampered_cursors(), ids=_ids(tampered_cursors()))
async def test_tampered_cursor_is_a_400_naming_cursor(
    client: httpx.AsyncClient, listing: Any, case: str, cursor: str
) -> None:
    if listing == "categories":
        response = await client.get("/v1/categories", params={"cursor": cursor})
    else:
        response = await client.get("/v1/products", params=listing | {"cursor": cursor})
    assert_problem(response, 400, "cursor")


async def test_bodies_over_the_limit_are_413_with_or_without_content_length(
    client: httpx.AsyncClient, shared: Database, tenant: uuid.UUID
) -> None:
    before = await _written(shared, tenant)
    items = [{"name": "P", "price": "1.00", "description": "d" * 9_000} for _ in range(240)]
    body = json_bytes({"items": items})
    assert len(body) > MAX_BODY
    headers = {"content-type": "application/json"}
    assert_problem(await client.post("/v1/products/bulk", content=body, headers=headers), 413)
    streamed = await client.post("/v1/products/bulk", content=chunked(body), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413)
    assert await _written(shared, tenant) == before
