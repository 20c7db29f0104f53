"""The migrator's API contract: 202 + the migration, 409 for a second active move of a tenant (the
database's partial unique index decides), 404 for an unknown tenant or migration, 409 for a direction
the tenant is already in, 400/422 problem bodies naming the field, list filters and paging, and a
cancel of a pending move that leaves no trace. The runner is off here: nothing moves."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from migrator.app import create_app

from tests.integration.migrator.conftest import directory, migrator_settings
from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.apps import serve


@pytest.fixture(scope="module")
async def idle_migrator(stack_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(migrator_settings(stack_env, migrator_runner_enabled=False))) as client:
        yield client


async def test_a_second_active_move_of_a_tenant_is_a_409(
    idle_migrator: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant_id = await make_tenant("shared")
    body = {"tenant_id": str(tenant_id)}
    responses = await asyncio.gather(*(idle_migrator.post("/v1/migrations", json=body) for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202, 409, 409, 409], [r.text for r in responses]
    conflict = next(r for r in responses if r.status_code == 409)
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert conflict.json()["field"] == "tenant_id"
    created = next(r for r in responses if r.status_code == 202).json()
    assert created["status"] == "pending"
    assert created["phase"] == "provision"
    assert created["from_state"]["tenant_type"] == "shared"
    assert created["to_state"] == {"tenant_type": "dedicated"}

    # Cancelled while pending: nothing was made, the tenant may be moved again.
    cancelled = await idle_migrator.post(f"/v1/migrations/{created['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert (await directory_type(idle_migrator, created["id"])) == "cancelled"
    again = await idle_migrator.post("/v1/migrations", json=body)
    assert again.status_code == 202, again.text
    await idle_migrator.post(f"/v1/migrations/{again.json()['id']}/cancel")


async def directory_type(client: httpx.AsyncClient, migration_id: str) -> str:
    status: str = (await client.get(f"/v1/migrations/{migration_id}")).json()["status"]
    return status


async def test_unknown_tenant_and_migration_are_404(idle_migrator: httpx.AsyncClient) -> None:
    response = await idle_migrator.post("/v1/migrations", json={"tenant_id": str(uuid.uuid4())})
    assert response.status_code == 404, response.text
    assert response.json()["field"] == "tenant_id"
    assert (await idle_migrator.get(f"/v1/migrations/{uuid.uuid4()}")).status_code == 404
    assert (await idle_migrator.post(f"/v1/migrations/{uuid.uuid4()}/cancel")).status_code == 404


async def test_a_direction_the_tenant_is_already_in_is_a_409(
    idle_migrator: httpx.AsyncClient, make_tenant: MakeTenant, stack_env: dict[str, str]
) -> None:
    tenant_id = await make_tenant("shared")
    response = await idle_migrator.post(
        "/v1/migrations", json={"tenant_id": str(tenant_id), "direction": "to_shared"}
    )
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "direction"
    assert (await directory(stack_env, tenant_id))["tenant_type"] == "shared"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "tenant_id"),
        ({"tenant_id": "not-a-uuid"}, "tenant_id"),
        ({"tenant_id": str(uuid.uuid4()), "direction": "sideways"}, "direction"),
        ({"tenant_id": str(uuid.uuid4()), "reason": "a\u0000b"}, "reason"),
        ({"tenant_id": str(uuid.uuid4()), "extra": 1}, "extra"),
    ],
)
async def test_bad_bodies_are_problems_naming_the_field(
    idle_migrator: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await idle_migrator.post("/v1/migrations", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


async def test_list_filters_and_pages(idle_migrator: httpx.AsyncClient, make_tenant: MakeTenant) -> None:
    tenant_id = await make_tenant("shared")
    ids = []
    for _ in range(3):
        made = await idle_migrator.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
        assert made.status_code == 202
        ids.append(made.json()["id"])
        await idle_migrator.post(f"/v1/migrations/{ids[-1]}/cancel")
    first = await idle_migrator.get("/v1/migrations", params={"tenant_id": str(tenant_id), "limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [m["id"] for m in page["items"]] == ids[::-1][:2]
    second = await idle_migrator.get(
        "/v1/migrations", params={"tenant_id": str(tenant_id), "limit": 2, "cursor": page["next_cursor"]}
    )
    assert [m["id"] for m in second.json()["items"]] == ids[:1]
    assert second.json()["next_cursor"] is None
    by_status = await idle_migrator.get(
        "/v1/migrations", params={"tenant_id": str(tenant_id), "status": "completed"}
    )
    assert by_status.json()["items"] == []
    bad = await idle_migrator.get("/v1/migrations", params={"cursor": "garbage"})
    assert bad.status_code == 400
    assert "cursor" in bad.text
