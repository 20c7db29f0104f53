"""The platform's promise end to end, with nobody calling the migrator: a tenant pushed past 10,000
products through catalog's bulk endpoint (catalog, usage and the migrator running as processes, each
as its own role) is counted by usage, which publishes the `products` crossing; the migrator's trigger
consumer queues the move and its runner moves the tenant to a dedicated database, while readers and
writers keep using the tenant through catalog. Then: zero failed requests, the tenant dedicated, every
acknowledged product in its new database and none left on the shared one, and the decisions recorded
(the basic plan's soft limit alerted, the products trigger queued the move)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from tenantdb.placement import dedicated_database_name
from tenantschema.urls import libpq_url, with_database

from tests.integration.migrator.conftest import directory
from tests.integration.placement.conftest import decisions, placement_groups_at_end, wait_migration
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret, tenant_factory
from tests.integration.usage.conftest import end_offsets, start_group_at
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.slow

TENANT_HEADER = "X-Tenant-ID"
PRODUCTS = 10_000
BATCH = 1000


@dataclass
class Traffic:
    failures: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    requests: int = 0

    def check(self, what: str, response: httpx.Response, expected: int) -> bool:
        self.requests += 1
        if response.status_code != expected:
            self.failures.append(f"{what}: {response.status_code} {response.text[:200]}")
            return False
        return True


@pytest.fixture(scope="module")
async def make_tenant(stack_env: dict[str, str]) -> AsyncIterator[MakeTenant]:
    async with tenant_factory(stack_env) as make:
        yield make


@pytest.fixture(scope="module")
async def services(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("placement-services")
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    usage_group = f"usage-test-{uuid.uuid4().hex[:12]}"
    await start_group_at(stack_env, usage_group, await end_offsets(bootstrap))  # no earlier backlog
    base = {**stack_env, "DEDICATED_PASSWORD_SECRET": dedicated_secret(), "LOG_LEVEL": "WARNING"}
    extra = {
        "catalog": {},
        "usage": {"USAGE_GROUP_ID": usage_group, "RECONCILE_ENABLED": "false"},
        "migrator": {
            "PLACEMENT_GROUP_ID": await placement_groups_at_end(bootstrap),
            "PLACEMENT_OFFSET_RESET": "latest",
            "PLACEMENT_COOL_DOWN_SECONDS": "0",
            "MIGRATOR_CLEANUP_DELAY_SECONDS": "1",
            "MIGRATOR_POLL_INTERVAL_SECONDS": "0.2",
        },
    }
    started: list[ServiceProcess] = []
    try:
        for name in ("catalog", "usage", "migrator"):
            started.append(ServiceProcess(name, {**base, **extra[name]}, logs / f"{name}.log"))
        for process in started:
            await process.wait_ready()
        yield {"catalog": started[0].url, "usage": started[1].url, "migrator": started[2].url}
    finally:
        for process in started:
            process.stop()


async def test_past_ten_thousand_products_the_tenant_moves_by_itself_under_traffic(
    stack_env: dict[str, str], make_tenant: MakeTenant, services: dict[str, str]
) -> None:
    tenant_id = await make_tenant("shared")
    traffic = Traffic()
    stop = asyncio.Event()
    async with (
        httpx.AsyncClient(
            base_url=services["catalog"], headers={TENANT_HEADER: str(tenant_id)}, timeout=30
        ) as catalog,
        httpx.AsyncClient(base_url=services["migrator"], timeout=30) as migrator,
    ):
        first = await catalog.post("/v1/products", json={"name": "first", "price": "1.00"})
        assert first.status_code == 201, first.text
        traffic.created.add(first.json()["id"])
        watched = first.json()["id"]

        async def write() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                made = await catalog.post("/v1/products", json={"name": f"steady {i}", "price": "2.50"})
                if traffic.check("create", made, 201):
                    traffic.created.add(made.json()["id"])
                patched = await catalog.patch(f"/v1/products/{watched}", json={"price": f"{i}.00"})
                traffic.check("update", patched, 200)
                await asyncio.sleep(0.02)

        async def read() -> None:
            while not stop.is_set():
                traffic.check("read", await catalog.get(f"/v1/products/{watched}"), 200)
                traffic.check("list", await catalog.get("/v1/products", params={"limit": 20}), 200)
                await asyncio.sleep(0.02)

        load = [asyncio.create_task(job()) for job in (write, read)]
        try:
            for batch in range(PRODUCTS // BATCH):
                items = [{"name": f"bulk {batch}-{i}", "price": "1.00"} for i in range(BATCH)]
                response = await catalog.post("/v1/products/bulk", json={"items": items}, timeout=60)
                if traffic.check("bulk", response, 201):
                    traffic.created.update(response.json()["ids"])
            began = time.monotonic()
            moved = await wait_migration(
                migrator, tenant_id, {"completed", "failed", "cancelled"}, timeout=240
            )
            waited = time.monotonic() - began
            await asyncio.sleep(1.5)  # traffic goes on against the new placement
        finally:
            stop.set()
            await asyncio.gather(*load)
        recorded = await decisions(migrator, tenant_id)

    assert traffic.failures == [], traffic.failures[:10]
    assert moved["status"] == "completed", moved
    assert (moved["trigger"], moved["migration_type"]) == ("products", "shared_to_dedicated")
    assert {(d["trigger"], d["outcome"]) for d in recorded} == {
        ("plan_max_products", "alerted"),  # the basic plan's soft limit (1,000): alert only
        ("products", "queued"),
    }
    assert next(d for d in recorded if d["trigger"] == "products")["migration_id"] == moved["id"]
    placement = await directory(stack_env, tenant_id)
    assert placement["tenant_type"] == "dedicated"
    database = dedicated_database_name(tenant_id)
    dedicated = await asyncpg.connect(libpq_url(with_database(stack_env["ADMIN_DATABASE_URL"], database)))
    shared = await asyncpg.connect(libpq_url(with_database(stack_env["ADMIN_DATABASE_URL"], "shared")))
    try:
        ids = {str(r["id"]) for r in await dedicated.fetch("SELECT id FROM products")}
        left = await shared.fetchval("SELECT count(*) FROM products WHERE tenant_id = $1", tenant_id)
    finally:
        await dedicated.close()
        await shared.close()
    assert len(traffic.created) > PRODUCTS
    assert ids == traffic.created  # every acknowledged product, nothing else
    assert left == 0
    print(
        f"\nplacement e2e: {traffic.requests} requests, 0 failed, {len(ids)} products moved; "
        f"the move ended {waited:.1f} s after the last bulk request, "
        f"freeze {moved['progress'].get('freeze_ms')} ms"
    )
