"""Every connection of the catalog names itself in pg_stat_activity (CONTRACT.md §2): `catalog` for
requests (as catalog's own role), `catalog:relay` for the outbox relay (as the relay's role)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from tenantschema.roles import RELAY_ROLE

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
    names = await wait_for_connection_names(stack_env["ADMIN_DATABASE_URL"], "catalog_service", {"catalog"})
    assert names == {"catalog"}
    # The relay logs in as its own role (outbox_relay), shared by every process's relay.
    relay_names = await wait_for_connection_names(
        stack_env["ADMIN_DATABASE_URL"], RELAY_ROLE, {"catalog:relay"}, exactly=False
    )
    assert "catalog:relay" in relay_names
