"""Every connection of tenancy names itself in pg_stat_activity (CONTRACT.md §2): `tenancy` for
requests, `tenancy:relay` for the outbox relay, all as tenancy's own role."""

from __future__ import annotations

import uuid

import httpx
from tenantschema.roles import RELAY_ROLE

from tests.support.databases import wait_for_connection_names


async def test_connections_carry_the_service_and_worker_names(
    tenancy: httpx.AsyncClient, stack_env: dict[str, str]
) -> None:
    created = await tenancy.post(
        "/v1/tenants", json={"name": "Named", "subdomain": f"n-{uuid.uuid4().hex[:12]}"}
    )
    assert created.status_code == 201  # a request connection, and an event for the relay
    names = await wait_for_connection_names(stack_env["ADMIN_DATABASE_URL"], "tenancy_service", {"tenancy"})
    assert names == {"tenancy"}
    # The relay logs in as its own role (outbox_relay), shared by every process's relay.
    relay_names = await wait_for_connection_names(
        stack_env["ADMIN_DATABASE_URL"], RELAY_ROLE, {"tenancy:relay"}, exactly=False
    )
    assert "tenancy:relay" in relay_names
