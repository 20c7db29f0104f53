"""Every connection of the catalog names itself in pg_stat_activity (CONTRACT.md §2): `catalog` for
requests, `catalog:relay` for the outbox relay, all as catalog's own role."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.integration.catalog.conftest import TENANT_HEADER, new_tenant
from tests.support.databases import wait_for_connection_names


async def test_connections_carry_the_service_and_worker_names(
    catalog_app: tuple[FastAPI, httpx.AsyncClient], stack_env: dict[str, str]
) -> None:
    _, client = catalog_app
    tenant = await new_tenant(stack_env, "shared", [])
    created = await client.post(
        "/v1/products", json={"name": "Named", "price": "1.00"}, headers={TENANT_HEADER: str(tenant)}
    )
    assert created.status_code == 201  # a request connection, and an event for the relay
    names = await wait_for_connection_names(
        stack_env["ADMIN_DATABASE_URL"], "catalog_service", {"catalog", "catalog:relay"}
    )
    assert names == {"catalog", "catalog:relay"}
