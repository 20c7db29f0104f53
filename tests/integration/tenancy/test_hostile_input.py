"""Hostile input at tenancy's edge, table by table: every refusal is a 4xx problem naming the field, and
nothing is written (no tenant row, no change, no outbox event)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tenancy.app import create_app

from tests.integration.tenancy.conftest import tenancy_settings
from tests.support.apps import serve
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

KAFKA_MESSAGE_BYTES = 1_048_576  # the broker's default message.max.bytes


@pytest.fixture(scope="module")
async def client(stack_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """tenancy with the default body limit (the shared fixture's is smaller)."""
    async with serve(create_app(tenancy_settings(stack_env))) as http:
        yield http


@pytest.fixture(scope="module")
async def platform(admin_url: str) -> AsyncIterator[Database]:
    database = await Database.open(admin_url, "platform")
    yield database
    await database.close()


def _subdomain() -> str:
    return f"h-{uuid.uuid4().hex[:16]}"


async def _written(platform: Database, subdomain: str) -> int:
    rows = await platform.count("SELECT count(*) FROM tenants WHERE subdomain = $1", subdomain)
    events = await platform.count(
        "SELECT count(*) FROM outbox WHERE payload -> 'data' ->> 'subdomain' = $1", subdomain
    )
    return rows + events


# (case, fields over a valid body, status, field named)
CREATE_REFUSED: list[tuple[str, dict[str, Any], int, str]] = [
    ("nul in name", {"name": f"Ac{NUL}me"}, 422, "name"),
    ("nul in subdomain", {"subdomain": f"ab{NUL}c"}, 422, "subdomain"),
    ("nul in custom_domain", {"custom_domain": f"shop{NUL}.example.com"}, 422, "custom_domain"),
    ("nul in settings value", {"settings": {"theme": f"da{NUL}rk"}}, 422, "settings"),
    ("nul in settings key", {"settings": {f"the{NUL}me": "dark"}}, 422, "settings"),
    ("nul in nested settings value", {"settings": deep(5, f"x{NUL}")}, 422, "settings"),
    ("nul in nested settings key", {"settings": {"a": [{"b": {f"k{NUL}": 1}}]}}, 422, "settings"),
    ("name past its maximum", {"name": "n" * 256}, 422, "name"),
    ("empty name", {"name": ""}, 422, "name"),
    ("subdomain past its maximum", {"subdomain": "s" * 51}, 422, "subdomain"),
    (
        "custom_domain past its maximum",
        {"custom_domain": ("a" * 63 + ".") * 3 + "b" * 58 + ".com"},
        422,
        "custom_domain",
    ),
    ("settings nested too deep", {"settings": deep(MAX_JSON_DEPTH + 1)}, 422, "settings"),
    ("settings integer past int64", {"settings": {"n": INT64_MAX + 1}}, 422, "settings"),
    ("settings integer below int64", {"settings": {"n": -(2**63) - 1}}, 422, "settings"),
    ("settings 400-digit integer", {"settings": {"n": int("9" * 400)}}, 422, "settings"),
    ("settings past its size", {"settings": big_object(MAX_JSON_BYTES)}, 422, "settings"),
    # Issue 7: an event that could never be sent (1.5 MB) is refused up front.
    ("settings of 1.5 MB", {"settings": big_object(1_500_000)}, 422, "settings"),
    ("settings not an object", {"settings": [1, 2]}, 422, "settings"),
    ("null name", {"name": None}, 422, "name"),
    ("null subdomain", {"subdomain": None}, 422, "subdomain"),
    ("null plan", {"plan": None}, 422, "plan"),
    ("null settings", {"settings": None}, 422, "settings"),
    ("unknown plan", {"plan": "platinum"}, 422, "plan"),
]


@pytest.mark.parametrize(
    ("fields", "status", "field"), [c[1:] for c in CREATE_REFUSED], ids=[c[0] for c in CREATE_REFUSED]
)
async def test_create_refuses(
    client: httpx.AsyncClient, platform: Database, fields: dict[str, Any], status: int, field: str
) -> None:
    subdomain = _subdomain()
    body = {"name": "Acme", "subdomain": subdomain} | fields
    assert_problem(await client.post("/v1/tenants", json=body), status, field)
    assert await _written(platform, subdomain) == 0


CREATE_ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("name at its maximum", {"name": "n" * 255}),
    # 253 characters, labels of 63 (unique per run: custom domains are unique)
    (
        "custom_domain at its maximum",
        {"custom_domain": f"{uuid.uuid4().hex:a<63}." + ("a" * 63 + ".") * 2 + "b" * 57 + ".com"},
    ),
    ("settings at the maximum depth", {"settings": deep(MAX_JSON_DEPTH)}),
    ("settings at int64 bounds", {"settings": {"max": INT64_MAX, "min": -(2**63)}}),
    ("settings just under its size", {"settings": big_object(MAX_JSON_BYTES - 100)}),
    ("unicode settings", {"settings": {"ключ": "値 ✓", "emoji": "🛋️"}}),
]


@pytest.mark.parametrize("fields", [c[1] for c in CREATE_ACCEPTED], ids=[c[0] for c in CREATE_ACCEPTED])
async def test_create_accepts_at_the_bounds(
    client: httpx.AsyncClient, platform: Database, fields: dict[str, Any]
) -> None:
    subdomain = _subdomain()
    body = {"name": "Acme", "subdomain": subdomain} | fields
    response = await client.post("/v1/tenants", json=body)
    assert response.status_code == 201, response.text[:500]
    created = response.json()
    for key, value in fields.items():
        assert created[key] == value
    assert await platform.count("SELECT count(*) FROM tenants WHERE subdomain = $1", subdomain) == 1
    # Issue 7: whatever the accepted settings, the event fits a Kafka message (1 MB) with room to spare.
    largest = await platform.count(
        "SELECT max(octet_length(payload::text)) FROM outbox WHERE tenant_id = $1", uuid.UUID(created["id"])
    )
    assert largest < KAFKA_MESSAGE_BYTES // 10


UPDATE_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("null name", {"name": None}, "name"),
    ("null plan", {"plan": None}, "plan"),
    ("null status", {"status": None}, "status"),
    ("null settings", {"settings": None}, "settings"),
    ("null compliance_isolation", {"compliance_isolation": None}, "compliance_isolation"),
    ("nul in name", {"name": f"x{NUL}"}, "name"),
    ("nul in custom_domain", {"custom_domain": f"a{NUL}.example.com"}, "custom_domain"),
    ("nul in settings key", {"settings": {NUL: 1}}, "settings"),
    ("nul deep in settings", {"settings": deep(20, [f"{NUL}"])}, "settings"),
    ("name past its maximum", {"name": "n" * 256}, "name"),
    ("settings nested too deep", {"settings": deep(MAX_JSON_DEPTH + 1)}, "settings"),
    ("settings integer past int64", {"settings": {"n": [INT64_MAX + 1]}}, "settings"),
    ("settings of 1.5 MB", {"settings": big_object(1_500_000)}, "settings"),
    ("status deleted", {"status": "deleted"}, "status"),
    ("a valid change beside a bad one", {"plan": "enterprise", "name": None}, "name"),
]


@pytest.fixture(scope="module")
async def existing(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/v1/tenants", json={"name": "Patched", "subdomain": _subdomain()})
    assert response.status_code == 201, response.text
    tenant: dict[str, Any] = response.json()
    return tenant


@pytest.mark.parametrize(
    ("fields", "field"), [c[1:] for c in UPDATE_REFUSED], ids=[c[0] for c in UPDATE_REFUSED]
)
async def test_update_refuses(
    client: httpx.AsyncClient,
    platform: Database,
    existing: dict[str, Any],
    fields: dict[str, Any],
    field: str,
) -> None:
    tenant_id = uuid.UUID(existing["id"])
    before = dict(await platform.connection.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id))
    response = await client.patch(f"/v1/tenants/{tenant_id}", json=fields)
    assert_problem(response, 422, field)
    after = dict(await platform.connection.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id))
    assert after == before
    updates = await platform.count(
        "SELECT count(*) FROM outbox WHERE tenant_id = $1 AND event_type <> 'tenant.created'", tenant_id
    )
    assert updates == 0


async def test_update_may_clear_custom_domain(client: httpx.AsyncClient, existing: dict[str, Any]) -> None:
    """The one nullable field of the PATCH body."""
    response = await client.patch(f"/v1/tenants/{existing['id']}", json={"custom_domain": None})
    assert response.status_code == 200, response.text
    assert response.json()["custom_domain"] is None


LIST_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("nul in plan", {"plan": f"basic{NUL}"}, "plan"),
    ("unknown status", {"status": "gone"}, "status"),
    ("unknown tenant_type", {"tenant_type": "dedicatedx"}, "tenant_type"),
    ("limit 0", {"limit": 0}, "limit"),
    ("limit past 200", {"limit": 201}, "limit"),
    ("limit past int64", {"limit": 2**64}, "limit"),
    ("limit not a number", {"limit": "ten"}, "limit"),
]


@pytest.mark.parametrize(("params", "field"), [c[1:] for c in LIST_REFUSED], ids=[c[0] for c in LIST_REFUSED])
async def test_list_refuses(client: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    assert_problem(await client.get("/v1/tenants", params=params), 422, field)


@pytest.mark.parametrize(
    "host", [f"shop{NUL}.example.com", "h" * 301, ""], ids=["nul", "past its maximum", "empty"]
)
async def test_resolve_refuses(client: httpx.AsyncClient, host: str) -> None:
    assert_problem(await client.get("/v1/resolve", params={"host": host}), 422, "host")


@pytest.mark.parametrize(("case", "cursor"), tampered_cursors(), ids=[c for c, _ in tampered_cursors()])
async def test_tampered_cursor_is_a_400_naming_cursor(
    client: httpx.AsyncClient, case: str, cursor: str
) -> None:
    assert_problem(await client.get("/v1/tenants", params={"cursor": cursor}), 400, "cursor")


async def test_bodies_over_the_limit_are_413_with_or_without_content_length(
    client: httpx.AsyncClient, platform: Database
) -> None:
    subdomain = _subdomain()
    body = json_bytes({"name": "Big", "subdomain": subdomain, "settings": big_object(MAX_BODY)})
    headers = {"content-type": "application/json"}
    declared = await client.post("/v1/tenants", content=body, headers=headers)
    assert_problem(declared, 413)
    streamed = await client.post("/v1/tenants", content=chunked(body), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413)
    assert await _written(platform, subdomain) == 0


async def test_chunked_body_within_the_limit_is_read_whole(client: httpx.AsyncClient) -> None:
    subdomain = _subdomain()
    settings = {"k": "v" * 50_000}
    body = json_bytes({"name": "Streamed", "subdomain": subdomain, "settings": settings})
    response = await client.post(
        "/v1/tenants", content=chunked(body, chunk=4096), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text[:500]
    assert response.json()["settings"] == settings


async def test_json_nested_beyond_the_parser_is_a_4xx_problem(
    client: httpx.AsyncClient, platform: Database
) -> None:
    subdomain = _subdomain()
    depth = 100_000
    body = (
        '{"name": "Deep", "subdomain": "'
        + subdomain
        + '", "settings": '
        + '{"d": ' * depth
        + "1"
        + "}" * depth
        + "}"
    ).encode()
    response = await client.post("/v1/tenants", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text[:500]
    assert_problem(response, response.status_code)
    assert await _written(platform, subdomain) == 0
