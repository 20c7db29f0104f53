"""tenancy's HTTP API against the real platform database and Kafka."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.integration.tenancy.conftest import BASE_DOMAIN
from tests.support.kafka import watch

TENANT_FIELDS = {
    "id", "name", "subdomain", "custom_domain", "plan", "status", "tenant_type", "database_name",
    "product_count", "monthly_requests", "settings", "created_at", "updated_at",
}  # fmt: skip


def _subdomain() -> str:
    return f"shop-{uuid.uuid4().hex[:12]}"


async def _create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Acme", "subdomain": _subdomain()} | fields
    response = await client.post("/v1/tenants", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_create_and_read_a_tenant(tenancy: httpx.AsyncClient) -> None:
    created = await _create(tenancy, plan="professional", settings={"theme": {"color": "#fff"}, "n": [1, 2]})
    assert created.keys() >= TENANT_FIELDS
    assert created["plan"] == "professional"
    assert (created["status"], created["tenant_type"], created["database_name"]) == ("active", "shared", None)
    assert created["settings"] == {"theme": {"color": "#fff"}, "n": [1, 2]}
    fetched = await tenancy.get(f"/v1/tenants/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_bad_input_is_a_problem_naming_the_field(tenancy: httpx.AsyncClient) -> None:
    for body, field in (
        ({"name": "x", "subdomain": "Bad_Sub"}, "subdomain"),
        ({"name": "x", "subdomain": "-lead"}, "subdomain"),
        ({"name": "", "subdomain": _subdomain()}, "name"),
        ({"name": "x", "subdomain": _subdomain(), "plan": "platinum"}, "plan"),
        ({"name": "x", "subdomain": _subdomain(), "custom_domain": "not a host"}, "custom_domain"),
        ({"name": "x", "subdomain": _subdomain(), "surprise": 1}, "surprise"),
    ):
        response = await tenancy.post("/v1/tenants", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 422
        assert problem["errors"][0]["field"] == field


async def test_taken_subdomain_and_custom_domain_conflict(tenancy: httpx.AsyncClient) -> None:
    first = await _create(tenancy, custom_domain=f"{uuid.uuid4().hex[:8]}.example.com")
    again = await tenancy.post("/v1/tenants", json={"name": "B", "subdomain": first["subdomain"]})
    assert again.status_code == 409
    assert "subdomain" in again.json()["detail"]
    domain = first["custom_domain"].upper()
    clash = await tenancy.post(
        "/v1/tenants", json={"name": "C", "subdomain": _subdomain(), "custom_domain": domain}
    )
    assert clash.status_code == 409


async def test_unknown_tenant_is_404_problem(tenancy: httpx.AsyncClient) -> None:
    response = await tenancy.get(f"/v1/tenants/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert (await tenancy.get("/v1/tenants/not-a-uuid")).status_code == 422


async def test_list_filters_and_paginates(tenancy: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex[:6]
    made = [await _create(tenancy, name=f"list-{marker}", plan="enterprise") for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"plan": "enterprise", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await tenancy.get("/v1/tenants", params=params)).json()
        assert len(page["items"]) <= 2
        assert all(t["plan"] == "enterprise" for t in page["items"])
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert {t["id"] for t in made} <= set(seen)
    assert len(seen) == len(set(seen))
    assert (await tenancy.get("/v1/tenants", params={"limit": 0})).status_code == 422
    assert (await tenancy.get("/v1/tenants", params={"limit": 201})).status_code == 422
    for cursor in ("garbage!", ""):  # the empty one was a 500
        bad_cursor = await tenancy.get("/v1/tenants", params={"cursor": cursor})
        assert bad_cursor.status_code == 400, cursor
        assert bad_cursor.json()["errors"][0]["field"] == "cursor"


async def test_update_plan_status_and_settings_with_events(
    tenancy: httpx.AsyncClient, kafka_bootstrap: str
) -> None:
    tenant = await _create(tenancy)
    async with watch(kafka_bootstrap, "tenancy.tenants.v1") as seen:
        response = await tenancy.patch(
            f"/v1/tenants/{tenant['id']}",
            json={
                "plan": "enterprise",
                "settings": {"a": 1},
                "compliance_isolation": True,
                "status": "suspended",
            },
        )
        assert response.status_code == 200, response.text
        updated = response.json()
        assert (updated["plan"], updated["status"], updated["settings"]) == (
            "enterprise",
            "suspended",
            {"a": 1},
        )
        assert updated["compliance_isolation"] is True
        events = await seen.wait_for(
            lambda m: m["tenant_id"] == tenant["id"] and m["event_type"] != "tenant.created", count=2
        )
    by_type = {e["event_type"]: e for e in events}
    assert by_type["tenant.plan_changed"]["data"] == {
        "tenant_id": tenant["id"], "old_plan": "basic", "new_plan": "enterprise",
    }  # fmt: skip
    assert by_type["tenant.updated"]["data"]["status"] == "suspended"
    for event in events:
        assert set(event) == {
            "event_id",
            "event_type",
            "tenant_id",
            "occurred_at",
            "schema_version",
            "producer",
            "data",
        }
        assert event["schema_version"] == 1
        assert event["producer"] == "tenancy"
        uuid.UUID(event["event_id"])
    assert (await tenancy.patch(f"/v1/tenants/{tenant['id']}", json={"status": "deleted"})).status_code == 422
    assert (await tenancy.patch(f"/v1/tenants/{uuid.uuid4()}", json={"name": "x"})).status_code == 404


async def test_soft_delete(tenancy: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    tenant = await _create(tenancy)
    async with watch(kafka_bootstrap, "tenancy.tenants.v1") as seen:
        response = await tenancy.delete(f"/v1/tenants/{tenant['id']}")
        assert response.status_code == 202
        assert response.json()["status"] == "deleted"
        # The relay may publish `tenant.created` after the watch started: wait for the deletion.
        [event] = await seen.wait_for(
            lambda m: m["tenant_id"] == tenant["id"] and m["event_type"] != "tenant.created"
        )
    assert event["event_type"] == "tenant.deleted"
    assert (await tenancy.get(f"/v1/tenants/{tenant['id']}")).json()["status"] == "deleted"
    # A deleted tenant cannot be changed, and it leaves the default listing.
    assert (await tenancy.patch(f"/v1/tenants/{tenant['id']}", json={"name": "zombie"})).status_code == 409
    listed = (await tenancy.get("/v1/tenants", params={"status": "deleted", "limit": 200})).json()
    assert tenant["id"] in {t["id"] for t in listed["items"]}


async def test_plans_are_the_seeded_three(tenancy: httpx.AsyncClient) -> None:
    plans = (await tenancy.get("/v1/plans")).json()["items"]
    assert [(p["name"], p["price"], p["database_type"]) for p in plans] == [
        ("basic", "29.00", "shared"),
        ("professional", "79.00", "shared"),
        ("enterprise", "299.00", "dedicated"),
    ]
    assert plans[0]["limits"]["max_products"] == 1000


async def test_resolve_by_subdomain_and_custom_domain(tenancy: httpx.AsyncClient) -> None:
    domain = f"{uuid.uuid4().hex[:8]}.example.org"
    tenant = await _create(tenancy, custom_domain=domain)
    expected = {"tenant_id": tenant["id"], "tenant_type": "shared", "status": "active"}
    for host in (f"{tenant['subdomain']}.{BASE_DOMAIN}", f"{tenant['subdomain']}.{BASE_DOMAIN.upper()}:8443",
                 domain, f"{domain.upper()}."):  # fmt: skip
        response = await tenancy.get("/v1/resolve", params={"host": host})
        assert response.status_code == 200, host
        assert response.json() == expected
    assert (await tenancy.get("/v1/resolve", params={"host": f"nobody.{BASE_DOMAIN}"})).status_code == 404
    assert (await tenancy.get("/v1/resolve", params={"host": f"a.b.{BASE_DOMAIN}"})).status_code == 404
    await tenancy.delete(f"/v1/tenants/{tenant['id']}")
    assert (await tenancy.get("/v1/resolve", params={"host": domain})).status_code == 404


async def test_body_over_the_limit_is_413(tenancy: httpx.AsyncClient) -> None:
    response = await tenancy.post(
        "/v1/tenants", json={"name": "big", "subdomain": _subdomain(), "settings": {"blob": "x" * 70_000}}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_health_readiness_metrics_docs(tenancy: httpx.AsyncClient) -> None:
    assert (await tenancy.get("/healthz")).status_code == 200
    ready = await tenancy.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
    metrics = await tenancy.get("/metrics")
    assert "outbox_sends_total" in metrics.text
    assert (await tenancy.get("/docs")).status_code == 200
    assert "/v1/tenants" in (await tenancy.get("/openapi.json")).json()["paths"]
    asyncapi = (await tenancy.get("/asyncapi.json")).json()
    assert asyncapi["asyncapi"].startswith("3.")
    assert any("tenancy.tenants.v1" in name for name in asyncapi["channels"])
