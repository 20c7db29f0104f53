"""Reconciliation on a dedicated tenant: its real product count read on its own database, and its
storage measured exactly there (pg_database_size)."""

from __future__ import annotations

import asyncpg
from events import topics
from tenantdb.provisioning import drop_dedicated

from tests.integration.tenantdb.conftest import move_to_dedicated
from tests.integration.usage.conftest import counts_of, end_offsets, new_tenants, usage_app, wait_until
from tests.support.databases import role_url


async def test_a_dedicated_tenant_is_measured_on_its_own_database(stack_env: dict[str, str]) -> None:
    (tenant_id,) = await new_tenants(stack_env, 1)
    database = await move_to_dedicated(stack_env, tenant_id)
    try:
        admin = await asyncpg.connect(stack_env["ADMIN_DATABASE_URL"])
        try:
            size = await admin.fetchval("SELECT pg_database_size($1)", database)
        finally:
            await admin.close()
        usage_role = await asyncpg.connect(role_url(stack_env, "usage"))
        try:
            # A counter that drifted (a lost event, say): the real count on the dedicated database is 0.
            await usage_role.execute("UPDATE tenants SET product_count = 3 WHERE id = $1", tenant_id)
            mark = await end_offsets(stack_env["KAFKA_BOOTSTRAP_SERVERS"])
            async with usage_app(stack_env, start_at=mark) as (app, _):
                consumer = app.state.runtime.background[0].consumer

                async def caught_up() -> bool:  # corrections wait for the consumer to have caught up
                    return bool(consumer.caught_up(topics.PRODUCTS))

                await wait_until(caught_up, "the consumer caught up with the products topic")
                reconciler = app.state.runtime.background[1]
                await reconciler.round(only={tenant_id})
                await reconciler.round(only={tenant_id})
            storage = await usage_role.fetchval(
                "SELECT storage_used_gb FROM tenant_usage_metrics WHERE tenant_id = $1 "
                "AND metric_date = (now() AT TIME ZONE 'UTC')::date",
                tenant_id,
            )
        finally:
            await usage_role.close()
        assert abs(float(storage) - size / 1024**3) < 0.002  # within rounding to 1 MB and growth
        assert (await counts_of(stack_env, tenant_id)).product_count == 0
    finally:
        tenancy = await asyncpg.connect(role_url(stack_env, "tenancy"))
        try:
            await tenancy.execute("UPDATE tenants SET status = 'deleted' WHERE id = $1", tenant_id)
        finally:
            await tenancy.close()
        await drop_dedicated(stack_env["ADMIN_DATABASE_URL"], tenant_id)
