"""Every connection of the orders service names itself in pg_stat_activity (CONTRACT.md §2): `orders`
for requests, `orders:consumers` for the product consumer, as the orders service's own role;
`orders:relay` for the outbox relay, as the relay's role."""

from __future__ import annotations

from tenantschema.roles import RELAY_ROLE

from tests.integration.orders.conftest import OrdersApp, ProductFeed, product_event
from tests.integration.tenantdb.conftest import MakeTenant
from tests.support.databases import wait_for_connection_names

EXPECTED = {"orders", "orders:consumers"}


async def test_connections_carry_the_service_and_worker_names(
    orders_app: OrdersApp, feed: ProductFeed, make_tenant: MakeTenant, stack_env: dict[str, str]
) -> None:
    tenant = await make_tenant("shared")
    await feed.seed(tenant, product_event(tenant))  # the consumer writes the read model
    response = await orders_app.http.get("/v1/orders", headers={"X-Tenant-ID": str(tenant)})
    assert response.status_code == 200  # a request connection
    names = await wait_for_connection_names(stack_env["ADMIN_DATABASE_URL"], "orders_service", EXPECTED)
    assert names == EXPECTED
    # The relay logs in as its own role (outbox_relay), shared by every process's relay.
    relay_names = await wait_for_connection_names(
        stack_env["ADMIN_DATABASE_URL"], RELAY_ROLE, {"orders:relay"}, exactly=False
    )
    assert "orders:relay" in relay_names
