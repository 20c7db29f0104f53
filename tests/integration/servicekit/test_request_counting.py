"""Tenant-scoped requests are counted in memory and published as `api.requests_counted` windows;
the last window is flushed on graceful shutdown."""

from __future__ import annotations

import uuid

from catalog.app import create_app

from tests.integration.catalog.conftest import catalog_settings
from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.apps import serve
from tests.support.kafka import watch


def _mine(tenant: uuid.UUID):  # type: ignore[no-untyped-def]
    return lambda m: m.get("tenant_id") == str(tenant) and m.get("event_type") == "api.requests_counted"


async def test_counts_are_published_per_window(
    stack_env: dict[str, str], make_tenant: MakeTenant, kafka_bootstrap: str
) -> None:
    tenant, other = await make_tenant("shared"), await make_tenant("shared")
    app = create_app(catalog_settings(stack_env, request_count_window_seconds=0.2))
    async with watch(kafka_bootstrap, "usage.requests.v1") as seen:
        async with serve(app) as client:
            for _ in range(7):
                assert (
                    await client.get("/v1/products", headers={"X-Tenant-ID": str(tenant)})
                ).status_code == 200
            for _ in range(3):
                await client.get("/v1/products", headers={"X-Tenant-ID": str(other)})
            await client.get("/healthz")  # not tenant-scoped: not counted
            await seen.wait_for(_mine(tenant))
        events = [m for m in seen.messages if _mine(tenant)(m)]
        assert sum(e["data"]["count"] for e in events) == 7
        others = await seen.wait_for(_mine(other))
    assert sum(e["data"]["count"] for e in others) == 3
    event = events[0]
    assert event["producer"] == "catalog"
    assert event["data"]["service"] == "catalog"
    assert event["data"]["window_start"] <= event["data"]["window_end"]


async def test_the_last_window_is_flushed_on_shutdown(
    stack_env: dict[str, str], make_tenant: MakeTenant, kafka_bootstrap: str
) -> None:
    tenant = await make_tenant("shared")
    # A window far longer than the test: only the shutdown flush can publish these counts.
    app = create_app(catalog_settings(stack_env, request_count_window_seconds=3600))
    async with watch(kafka_bootstrap, "usage.requests.v1") as seen:
        async with serve(app) as client:
            for _ in range(5):
                await client.get("/v1/products", headers={"X-Tenant-ID": str(tenant)})
            assert not [m for m in seen.messages if _mine(tenant)(m)]
        [event] = await seen.wait_for(_mine(tenant))
    assert event["data"]["count"] == 5
