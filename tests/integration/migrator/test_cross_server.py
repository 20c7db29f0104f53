"""A move to another PostgreSQL server and back: the dedicated database lives on a second local
cluster (devstack.dedicated_cluster), the migrator reaches it with DEDICATED_ADMIN/OWNER_DATABASE_URL
and catalog with DEDICATED_DATABASE_URL_TEMPLATE. Capture, copy, verify and cutover then cross
servers (no fence, advisory lock or snapshot is shared between the two): catalog keeps writing and
reading the tenant throughout with no failed request, every acknowledged write is on the new server,
its events reach Kafka from there, and the move back restores the shared rows exactly."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from catalog.app import create_app as create_catalog
from devstack.config import load_config
from devstack.dedicated_cluster import DedicatedCluster
from events import topics
from migrator.app import create_app as create_migrator
from migrator.moves import Endpoint, table_checksums
from tenantdb.placement import dedicated_database_name
from tenantschema.urls import libpq_url, with_database

from tests.integration.catalog.conftest import catalog_settings
from tests.integration.migrator.conftest import checksums, directory, migrator_settings, seed_shared, wait_for
from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.apps import serve
from tests.support.kafka import watch
from tests.support.processes import free_port

SEEDED_PRODUCTS = 30
READ_MODEL = ("order_products", "processed_events")  # written by orders' consumer, not by this test


def _without(checksums: dict[str, object], tables: tuple[str, ...]) -> dict[str, object]:
    return {table: value for table, value in checksums.items() if table not in tables}


@pytest.fixture(scope="module")
def other_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    cluster = DedicatedCluster(
        load_config(), port=free_port(), state_dir=Path(tmp_path_factory.mktemp("dedicated-cluster"))
    )
    try:
        yield cluster.up()
    finally:
        cluster.down()


async def _databases(admin_url: str) -> set[str]:
    connection = await asyncpg.connect(libpq_url(admin_url))
    try:
        rows = await connection.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'tenant\\_%'")
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


def _on(server: dict[str, str], tenant_id: uuid.UUID) -> Endpoint:
    database = dedicated_database_name(tenant_id)
    return Endpoint(
        variant="dedicated",
        database=database,
        owner_url=libpq_url(with_database(server["DEDICATED_OWNER_DATABASE_URL"], database)),
        admin_url=libpq_url(with_database(server["DEDICATED_ADMIN_DATABASE_URL"], database)),
        tenant_id=tenant_id,
    )


async def _checksums_on(server: dict[str, str], tenant_id: uuid.UUID) -> dict[str, object]:
    side = _on(server, tenant_id)
    connection = await side.connect_reader()
    try:
        return await table_checksums(connection, side)
    finally:
        await connection.close()


@dataclass
class Traffic:
    created: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    reads: int = 0


@pytest.fixture
async def catalog(
    stack_env: dict[str, str], other_server: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = catalog_settings(
        stack_env, dedicated_database_url_template=other_server["DEDICATED_DATABASE_URL_TEMPLATE"]
    )
    async with serve(create_catalog(settings)) as client:
        yield client


async def _traffic(
    client: httpx.AsyncClient, tenant_id: uuid.UUID, traffic: Traffic, stop: asyncio.Event
) -> None:
    """Writes and reads of the tenant, back to back, until told to stop: every answer must be 2xx."""
    headers = {"X-Tenant-ID": str(tenant_id)}
    i = 0
    while not stop.is_set():
        i += 1
        made = await client.post(
            "/v1/products", json={"name": f"cross {i}", "price": "1.50", "sku": f"X-{i}"}, headers=headers
        )
        if made.status_code != 201:
            traffic.failures.append(f"POST {made.status_code} {made.text[:200]}")
            continue
        traffic.created.append(made.json()["id"])
        read = await client.get(f"/v1/products/{traffic.created[-1]}", headers=headers)
        if read.status_code != 200:
            traffic.failures.append(f"GET {read.status_code} {read.text[:200]}")
        traffic.reads += 1
        await asyncio.sleep(0.01)


async def test_a_tenant_moves_to_another_server_under_traffic_and_back(
    stack_env: dict[str, str],
    other_server: dict[str, str],
    catalog: httpx.AsyncClient,
    make_tenant: MakeTenant,
) -> None:
    tenant_id = await make_tenant("shared")
    database = dedicated_database_name(tenant_id)
    await seed_shared(stack_env, tenant_id, products=SEEDED_PRODUCTS)
    settings = migrator_settings(
        stack_env,
        dedicated_admin_database_url=other_server["DEDICATED_ADMIN_DATABASE_URL"],
        dedicated_owner_database_url=other_server["DEDICATED_OWNER_DATABASE_URL"],
    )
    traffic = Traffic()
    stop = asyncio.Event()
    async with (
        serve(create_migrator(settings)) as migrator,
        watch(stack_env["KAFKA_BOOTSTRAP_SERVERS"], topics.PRODUCTS) as seen,
    ):
        writer = asyncio.create_task(_traffic(catalog, tenant_id, traffic, stop))
        try:
            await asyncio.sleep(0.5)
            made = await migrator.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
            assert made.status_code == 202, made.text
            done = await wait_for(migrator, made.json()["id"], {"completed", "failed", "cancelled"})
            assert done["status"] == "completed", done
            written_at_cutover = len(traffic.created)
            await asyncio.sleep(1.0)  # writes after the flip: they go to the other server
        finally:
            stop.set()
            await writer
        assert not traffic.failures, traffic.failures[:5]
        assert len(traffic.created) > written_at_cutover > 0

        # On the other server, not on the stack's: every acknowledged write is there.
        assert database in await _databases(other_server["DEDICATED_ADMIN_DATABASE_URL"])
        assert database not in await _databases(stack_env["ADMIN_DATABASE_URL"])
        placed = await directory(stack_env, tenant_id)
        assert (placed["tenant_type"], placed["database_name"]) == ("dedicated", database)
        moved = await _checksums_on(other_server, tenant_id)
        assert moved["products"][0] == SEEDED_PRODUCTS + len(traffic.created)  # type: ignore[index]
        owner = await asyncpg.connect(_on(other_server, tenant_id).owner_url)
        try:
            present = await owner.fetchval(
                "SELECT count(*) FROM products WHERE id = ANY($1::uuid[])", traffic.created
            )
        finally:
            await owner.close()
        assert present == len(traffic.created)

        # Their events reached Kafka, those committed on the other server included (its outbox drained
        # by catalog's relay through the template), each once at least and in commit order.
        deadline = time.monotonic() + 30
        while True:
            ids = [
                m["data"]["product_id"]
                for m in seen.messages
                if m.get("tenant_id") == str(tenant_id) and m.get("event_type") == "product.created"
            ]
            if set(traffic.created) <= set(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert set(traffic.created) <= set(ids), f"{len(set(traffic.created) - set(ids))} events missing"
        first_seen = list(dict.fromkeys(ids))
        assert [i for i in first_seen if i in set(traffic.created)] == traffic.created

        # And back: the shared rows equal what the other server held; its database and role are gone.
        back = await migrator.post(
            "/v1/migrations", json={"tenant_id": str(tenant_id), "direction": "to_shared"}
        )
        assert back.status_code == 202, back.text
        returned = await wait_for(migrator, back.json()["id"], {"completed", "failed", "cancelled"})
        assert returned["status"] == "completed", returned
    # The tables the tenant's own writes made are back exactly. orders' read model of catalog's events
    # may only have grown meanwhile (the stack's orders, when it runs, applies the product events
    # written above once the tenant is back where its routes reach).
    returned_rows = await checksums(stack_env, tenant_id, "shared")
    assert _without(returned_rows, READ_MODEL) == _without(moved, READ_MODEL)
    for table in READ_MODEL:
        assert returned_rows[table][0] >= moved[table][0]  # type: ignore[index]
    assert database not in await _databases(other_server["DEDICATED_ADMIN_DATABASE_URL"])
    assert (await directory(stack_env, tenant_id))["tenant_type"] == "shared"
    for product_id in traffic.created[:: max(1, len(traffic.created) // 10)]:
        read = await catalog.get(f"/v1/products/{product_id}", headers={"X-Tenant-ID": str(tenant_id)})
        assert read.status_code == 200, read.text
