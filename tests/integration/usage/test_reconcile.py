"""Reconciliation on a dedicated tenant: its real product count read on its own database, and its
storage measured exactly there (pg_database_size)."""

from __future__ import annotations

import asyncio

import asyncpg
from events import topics
from tenantdb.provisioning import drop_dedicated

from tests.integration.tenantdb.conftest import move_to_dedicated
from tests.integration.usage.conftest import counts_of, end_offsets, new_tenants, usage_app
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
                consumer, reconciler = app.state.runtime.background
                # It corrects only what it sees while the consumer is caught up: the group may take a
                # while to be assigned its partitions (a member killed by an earlier test lingers).
                for _ in range(600):
                    if consumer.consumer.caught_up(topics.PRODUCTS):
                        break
                    await asyncio.sleep(0.1)
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
