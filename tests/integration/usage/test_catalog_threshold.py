"""The products trigger at its real default (10,000), driven through catalog's bulk endpoint: exactly
one `products` crossing; usage restarted and replaying the topics from the start emits none again;
one product deleted (below) and one created (across again) emits a second. The reconciler then finds
an injected drift of product_count, and corrects it only once it has seen it twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from catalog.app import create_app as create_catalog
from events import topics

from tests.integration.catalog.conftest import TENANT_HEADER, catalog_settings
from tests.integration.usage.conftest import (
    counts_of,
    end_offsets,
    new_tenants,
    usage_app,
    wait_consumed,
    wait_until,
)
from tests.support.apps import serve
from tests.support.databases import role_url
from tests.support.kafka import Seen, watch

pytestmark = pytest.mark.slow

PRODUCTS = 10_000


def products_crossed(seen: Seen, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        m
        for m in seen.messages
        if m.get("tenant_id") == str(tenant_id)
        and m.get("event_type") == "tenant.threshold_crossed"
        and m["data"]["metric"] == "products"
    ]


async def test_ten_thousand_products_through_catalog_cross_once(stack_env: dict[str, str]) -> None:
    (tenant_id,) = await new_tenants(stack_env, 1)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    headers = {TENANT_HEADER: str(tenant_id)}
    catalog = create_catalog(catalog_settings(stack_env))
    async with watch(bootstrap, topics.THRESHOLDS) as seen, serve(catalog) as shop:
        async with usage_app(stack_env, start_at=await end_offsets(bootstrap)) as (app, client):
            for batch in range(PRODUCTS // 1000):
                items = [{"name": f"p{batch}-{i}", "price": "1.00"} for i in range(1000)]
                response = await shop.post(
                    "/v1/products/bulk", json={"items": items}, headers=headers, timeout=60
                )
                assert response.status_code == 201, response.text
            await seen.wait_for(lambda m: m in products_crossed(seen, tenant_id), count=1, timeout=120)
            body = (await client.get(f"/v1/usage/{tenant_id}")).json()
            assert body["product_count"] == PRODUCTS
            assert [(t["metric"], t["period"]) for t in body["thresholds_crossed"]] == [
                ("plan_max_products", "episode-1"),  # the basic plan's 1,000
                ("products", "episode-1"),
            ]
        first = products_crossed(seen, tenant_id)
        assert [(m["data"]["value"], m["data"]["threshold"], m["data"]["period"]) for m in first] == [
            (PRODUCTS, PRODUCTS, "episode-1")
        ]

        async with usage_app(stack_env, reconcile_interval_seconds=3600) as (app, _):
            await wait_consumed(stack_env, app.state.settings.usage_group_id, timeout=120)
            await asyncio.sleep(1.5)
            assert products_crossed(seen, tenant_id) == first

            some = (await shop.get("/v1/products", params={"limit": 1}, headers=headers)).json()["items"][0]
            assert (await shop.delete(f"/v1/products/{some['id']}", headers=headers)).status_code in (
                200,
                204,
            )

            async def below() -> bool:
                return (await counts_of(stack_env, tenant_id)).product_count == PRODUCTS - 1

            # Applied before the next creation: levels are judged on each batch's final values, so a
            # fall and rise inside one batch would not re-arm the trigger (services/usage/README.md).
            await wait_until(below, "the deletion counted", timeout=90)
            created = await shop.post(
                "/v1/products", json={"name": "again", "price": "2.00"}, headers=headers
            )
            assert created.status_code == 201
            await seen.wait_for(lambda m: m in products_crossed(seen, tenant_id), count=2, timeout=90)
            await wait_consumed(stack_env, app.state.settings.usage_group_id)
            assert (await counts_of(stack_env, tenant_id)).product_count == PRODUCTS

            # Reconciliation: a drift injected into the counter is found, and corrected once seen twice.
            platform = await asyncpg.connect(role_url(stack_env, "usage"))
            try:
                await platform.execute(
                    "UPDATE tenants SET product_count = product_count + 7 WHERE id = $1", tenant_id
                )
                consumer = app.state.runtime.background[0].consumer

                async def caught_up() -> bool:  # corrections wait for the consumer to have caught up
                    return bool(consumer.caught_up(topics.PRODUCTS))

                await wait_until(caught_up, "the consumer caught up with the products topic")
                reconciler = app.state.runtime.background[1]
                await reconciler.round(only={tenant_id})
                assert (await counts_of(stack_env, tenant_id)).product_count == PRODUCTS + 7
                await reconciler.round(only={tenant_id})
                assert (await counts_of(stack_env, tenant_id)).product_count == PRODUCTS
                storage = await platform.fetchval(
                    "SELECT storage_used_gb FROM tenant_usage_metrics WHERE tenant_id = $1 "
                    "AND metric_date = (now() AT TIME ZONE 'UTC')::date",
                    tenant_id,
                )
            finally:
                await platform.close()
            assert storage is not None
            assert storage > 0  # 10,000 rows of the shared products table
    periods = [m["data"]["period"] for m in products_crossed(seen, tenant_id)]
    assert periods == ["episode-1", "episode-2"]
