"""Every Alembic history upgrades an empty database to head, downgrades it to base, and agrees
with the tables the application declares."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from tenantschema import migrations, placement, platform, usage
from tenantschema.declarations import CURRENT
from tenantschema.migrations import History
from tenantschema.render import render_metadata
from tenantschema.urls import asyncpg_url

from tests.support.databases import FreshDatabase

HEADS: dict[History, str] = {
    "platform": "platform_0010_usage_marks",
    "shared": "shared_0009_relay_release",
    "dedicated": "dedicated_0006_relay_release",
}
SERVICE_TABLES = {"processed_events", "order_products", "sequences", "idempotency_keys"}
RELAY_TABLES = {"outbox_leases", "outbox_relays"}  # and, in the platform database, outbox_sweeps

EXPECTED_TABLES: dict[History, set[str]] = {
    "platform": {
        "tenants",
        "subscription_plans",
        "tenant_usage_metrics",
        "tenant_migrations",
        "outbox",
        "inbox",
        *RELAY_TABLES,
        "outbox_sweeps",
        *usage.USAGE_TABLES,
        "usage_counter_marks",
        *placement.PLACEMENT_TABLES,
    },
    "shared": {
        "products",
        "product_categories",
        "customers",
        "orders",
        "orders_part_0",
        "orders_part_1",
        "orders_part_2",
        "orders_part_3",
        "tenant_fences",
        "outbox",
        *RELAY_TABLES,
        *SERVICE_TABLES,
    },
    "dedicated": {
        "products",
        "product_categories",
        "customers",
        "orders",
        "tenant_fences",
        "outbox",
        *RELAY_TABLES,
        *SERVICE_TABLES,
    },
}


def _platform_metadata() -> MetaData:
    """The platform tables and usage's own (declared apart: tenantschema.usage)."""
    combined = MetaData()
    for table in [
        *platform.metadata.sorted_tables,
        *usage.metadata.sorted_tables,
        *placement.metadata.sorted_tables,
    ]:
        table.to_metadata(combined)
    return combined


DECLARED: dict[History, MetaData] = {
    "platform": _platform_metadata(),
    "shared": render_metadata(CURRENT, "shared"),
    "dedicated": render_metadata(CURRENT, "dedicated"),
}


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


async def _diff(url: str, metadata: MetaData) -> list[Any]:
    engine = create_async_engine(asyncpg_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:

            def compare(sync_connection: Connection) -> list[Any]:
                context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("history", ["platform", "shared", "dedicated"])
async def test_history_upgrades_to_head_and_downgrades_to_base(
    history: History, fresh_database: FreshDatabase
) -> None:
    url = await fresh_database()
    assert await _tables(url) == set()

    await migrations.upgrade_async(url, history)
    assert await migrations.current_revision(url) == HEADS[history]
    assert await _tables(url) == EXPECTED_TABLES[history] | {"alembic_version"}

    await migrations.downgrade_async(url, history)
    assert await migrations.current_revision(url) is None
    assert await _tables(url) == {"alembic_version"}

    # And up again: a downgrade leaves nothing behind that blocks a second upgrade.
    await migrations.upgrade_async(url, history)
    assert await migrations.current_revision(url) == HEADS[history]


@pytest.mark.parametrize("history", ["platform", "shared", "dedicated"])
async def test_head_matches_the_declared_tables(history: History, fresh_database: FreshDatabase) -> None:
    url = await fresh_database()
    await migrations.upgrade_async(url, history)
    diff = await _diff(url, DECLARED[history])
    # Partitions, indexes and the fencing table are DDL outside the declared metadata (indexes are
    # checked by name below); columns, types, keys and constraints must agree.
    undeclared = {
        "orders_part_0",
        "orders_part_1",
        "orders_part_2",
        "orders_part_3",
        "tenant_fences",
        "outbox",
        "inbox",
        *RELAY_TABLES,
        "outbox_sweeps",
    }
    assert [
        d
        for d in diff
        if not (d[0] == "remove_table" and d[1].name in undeclared)
        and not (d[0] == "remove_index" and (history != "platform" or d[1].table.name in undeclared))
    ] == []


# The seed's index names (database-design.md), and the ones this project adds.
SEED_INDEXES = {
    "shared": {
        "idx_products_tenant_id",
        "idx_products_tenant_status",
        "idx_products_tenant_created",
        "idx_orders_tenant_id",
        "idx_orders_tenant_status",
        "idx_orders_tenant_customer",
    },
    "dedicated": {"idx_products_status", "idx_products_created"},
}
ADDED_INDEXES = {
    "shared": {
        "idx_products_tenant_category",
        "idx_products_search",
        "idx_categories_tenant_parent",
        "idx_order_products_tenant_keyset",  # shared_0008: per-tenant keyset scans (the migrator)
    },
    "dedicated": {
        "idx_products_category",
        "idx_products_search",
        "idx_categories_parent",
        "idx_orders_status",
        "idx_orders_customer",
    },
}


@pytest.mark.parametrize("history", ["shared", "dedicated"])
async def test_tenant_indexes_are_the_seeds(history: History, fresh_database: FreshDatabase) -> None:
    url = await fresh_database()
    await migrations.upgrade_async(url, history)
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexname LIKE 'idx_%' AND tablename NOT LIKE '%_part_%'"
        )
    finally:
        await connection.close()
    names = {row["indexname"] for row in rows}
    outbox = {"idx_outbox_unpublished", "idx_outbox_partition_unsent", "idx_outbox_backing_off"}
    assert names == SEED_INDEXES[history] | ADDED_INDEXES[history] | outbox
    definitions = {row["indexname"]: row["indexdef"] for row in rows}
    if history == "shared":
        assert "(tenant_id, status) WHERE (deleted_at IS NULL)" in definitions["idx_products_tenant_status"]
        assert "USING gin" in definitions["idx_products_search"]
        assert "(tenant_id, id)" in definitions["idx_products_tenant_id"]
    else:
        assert "(status) WHERE (deleted_at IS NULL)" in definitions["idx_products_status"]


async def test_shared_and_dedicated_have_the_same_tables_and_columns_but_tenant_id(
    fresh_database: FreshDatabase,
) -> None:
    shared_url, dedicated_url = await fresh_database(), await fresh_database()
    await migrations.upgrade_async(shared_url, "shared")
    await migrations.upgrade_async(dedicated_url, "dedicated")

    async def columns(url: str) -> dict[str, list[tuple[str, str, str]]]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(
                """SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
                   WHERE table_schema = 'public' AND table_name = ANY($1::text[])
                   ORDER BY table_name, ordinal_position""",
                ["products", "product_categories", "customers", "orders", *SERVICE_TABLES],
            )
        finally:
            await connection.close()
        result: dict[str, list[tuple[str, str, str]]] = {}
        for row in rows:
            result.setdefault(row["table_name"], []).append(
                (row["column_name"], row["data_type"], row["is_nullable"])
            )
        return result

    shared, dedicated = await columns(shared_url), await columns(dedicated_url)
    assert shared.keys() == dedicated.keys()
    for table, cols in shared.items():
        assert cols[0] == ("tenant_id", "uuid", "NO")
        assert cols[1:] == dedicated[table]
