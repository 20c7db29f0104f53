"""Fixtures for the migrator against the dev stack: an in-process migrator app (its runner moving
tenants for real between the stack's shared database and dedicated databases it provisions), tenants,
and a seeder that fills a tenant's tables on the shared database with awkward values."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from migrator.app import create_app
from migrator.domain import Variant
from migrator.moves import Endpoint, table_checksums
from migrator.settings import MigratorSettings
from tenantdb.placement import dedicated_database_name
from tenantschema.urls import libpq_url, with_database

from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret, tenant_factory
from tests.support.apps import serve
from tests.support.databases import role_settings
from tests.support.relay import relay_settings
from tests.support.stack_services import stack_service_paused

WAIT_SECONDS = 90.0


@pytest.fixture(scope="package", autouse=True)
def _stack_migrator_paused(stack_env: dict[str, str]) -> Iterator[None]:
    """The stack's own migrator (CI starts it) is paused while these tests run: its runner would race
    the tests' runners for their migrations (a crash test's move taken over by it)."""
    with stack_service_paused("migrator"):
        yield


def migrator_settings(stack_env: dict[str, str], **overrides: Any) -> MigratorSettings:
    values: dict[str, Any] = {
        **role_settings(stack_env, "migrator"),
        "kafka_bootstrap_servers": stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        "dedicated_password_secret": dedicated_secret(),
        "admin_database_url": stack_env["ADMIN_DATABASE_URL"],
        "owner_database_url": stack_env["OWNER_DATABASE_URL"],
        "migrator_poll_interval_seconds": 0.2,
        # Small chunks, each recorded: every table is copied and verified in several, resumable
        # steps, and a cancel is seen at the next chunk by whichever runner of the tests holds the
        # move (a cancel reaching another process is seen at the next progress record).
        "migrator_copy_chunk_rows": 7,
        "migrator_copy_progress_seconds": 0,
        "migrator_verify_chunk_rows": 11,
        "migrator_cleanup_delay_seconds": 0.5,
        # These tests ask for their moves; the placement tests turn it on with groups of their own.
        "placement_auto_enabled": False,
        **relay_settings(stack_env),
    }
    return MigratorSettings(**(values | overrides))


@pytest.fixture(scope="module")
async def make_tenant(stack_env: dict[str, str]) -> AsyncIterator[MakeTenant]:
    async with tenant_factory(stack_env) as make:
        yield make


@pytest.fixture(scope="module")
async def migrator(stack_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(migrator_settings(stack_env))) as client:
        yield client


async def wait_for(
    client: httpx.AsyncClient, migration_id: str, statuses: set[str], *, timeout: float = WAIT_SECONDS
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/v1/migrations/{migration_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"migration still {body['status']}/{body['phase']} after {timeout}s: {body}")
        await asyncio.sleep(0.1)


async def move_until_phase(
    client: httpx.AsyncClient, tenant_id: uuid.UUID, phase: str, *, poll: float = 0.01, timeout: float = 60
) -> str:
    """Ask the migrator to move the tenant and wait until the move is in `phase`; the migration id."""
    made = await client.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
    assert made.status_code == 202, made.text
    migration_id: str = made.json()["id"]
    deadline = time.monotonic() + timeout
    while (await client.get(f"/v1/migrations/{migration_id}")).json()["phase"] != phase:
        assert time.monotonic() < deadline, f"the move never reached its {phase}"
        await asyncio.sleep(poll)
    return migration_id


def endpoint(stack_env: dict[str, str], tenant_id: uuid.UUID, variant: Variant) -> Endpoint:
    database = "shared" if variant == "shared" else dedicated_database_name(tenant_id)
    return Endpoint(
        variant=variant,
        database=database,
        owner_url=libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], database)),
        admin_url=libpq_url(with_database(stack_env["ADMIN_DATABASE_URL"], database)),
        tenant_id=tenant_id,
    )


async def checksums(stack_env: dict[str, str], tenant_id: uuid.UUID, variant: Variant) -> dict[str, Any]:
    side = endpoint(stack_env, tenant_id, variant)
    connection = await side.connect_reader()
    try:
        return await table_checksums(connection, side)
    finally:
        await connection.close()


async def directory(stack_env: dict[str, str], tenant_id: uuid.UUID) -> asyncpg.Record:
    connection = await asyncpg.connect(libpq_url(stack_env["OWNER_DATABASE_URL"]))
    try:
        row = await connection.fetchrow(
            "SELECT tenant_type, database_name, placement_epoch FROM tenants WHERE id = $1", tenant_id
        )
    finally:
        await connection.close()
    assert row is not None
    return row


# Values that a careless encoding would change on the way: NULLs beside JSON nulls, floats and deep
# arrays in JSONB, unicode outside the BMP, numerics at their scale, a large text, microseconds.
AWKWARD_JSON: list[Any] = [
    None,
    {"float": 0.1, "exp": 1e-7, "big": 12345678901234567890, "neg": -0.0, "nested": [[1, [2.5, [3]]], []]},
    {"unicode": "Grüße 👋🏽 \u00e9\u0301 中文", "null": None, "empty": "", "quote": "a\"b'c\\d"},
    [1, "two", 3.0, None, True, {"k": [{}]}],
]


async def seed_shared(
    stack_env: dict[str, str], tenant_id: uuid.UUID, *, products: int = 40
) -> dict[str, int]:
    """Rows in every tenant table of the shared database for the tenant (as the schema owner in the
    tenant's RLS context, as tenantdb would write them)."""
    shared = endpoint(stack_env, tenant_id, "shared")
    connection = await asyncpg.connect(shared.owner_url, server_settings={"TimeZone": "UTC"})
    base = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))
            parent = await connection.fetchval(
                "INSERT INTO product_categories (name, slug) VALUES ('Root', 'root') RETURNING id"
            )
            categories = [parent]
            for i in range(5):
                categories.append(
                    await connection.fetchval(
                        "INSERT INTO product_categories (name, slug, parent_id, description, position) "
                        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        f"Cat {i} ünïcödé",
                        f"cat-{i}",
                        parent,
                        None if i % 2 else "x" * 20_000,
                        i,
                    )
                )
            for i in range(products):
                await connection.execute(
                    "INSERT INTO products (name, description, sku, price, compare_price, status, inventory, "
                    "seo, attributes, category_id, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $11)",
                    f"Product {i} 🚲",
                    None if i % 3 == 0 else f"line one\nline two\ttab {i}",
                    f"SKU-{i:05d}",
                    Decimal("0.01") + Decimal(i) * Decimal("1.10"),
                    None if i % 2 else Decimal("99999999.99"),
                    ("draft", "active", "archived")[i % 3],
                    json.dumps(AWKWARD_JSON[i % 4]),
                    None if i % 4 == 1 else "null",  # SQL NULL vs the JSON null
                    None,
                    categories[i % len(categories)],
                    base + timedelta(microseconds=i),
                )
            emails = []
            for i in range(8):
                email = f"c{i}@example.com"
                emails.append(email)
                await connection.execute(
                    "INSERT INTO customers (email, first_name, total_spent, total_orders, tags) "
                    "VALUES ($1, $2, $3, $4, $5::jsonb)",
                    email,
                    "Zoë" if i % 2 else None,
                    Decimal("9999999999.99") if i == 0 else Decimal("0.10"),
                    i,
                    json.dumps(["vip", i, 1.5]),
                )
            for i in range(25):
                await connection.execute(
                    "INSERT INTO orders (order_number, customer_email, total_amount, subtotal_amount, items, "
                    "notes, created_at) VALUES ($1, $2, $3, $3, $4::jsonb, $5, $6)",
                    f"ORD-{i + 1:06d}",
                    emails[i % len(emails)],
                    Decimal("12.34") * (i + 1),
                    json.dumps([{"product": i, "qty": 2, "price": "1.10"}]),
                    None if i % 2 else "note ✓",
                    base - timedelta(days=i, microseconds=7),
                )
            await connection.execute("INSERT INTO sequences (name, last_value) VALUES ('order_number', 25)")
            await connection.execute(
                "INSERT INTO order_products (id, name, price, status, version_at) "
                "SELECT gen_random_uuid(), 'P', 1.00, 'active', now() FROM generate_series(1, 5)"
            )
            await connection.execute(
                "INSERT INTO processed_events (consumer, event_id) "
                "SELECT 'orders.products', gen_random_uuid() FROM generate_series(1, 3)"
            )
            await connection.execute(
                "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response) "
                "VALUES ('orders', 'k1', repeat('a', 64), 201, '{\"id\": 1}')"
            )
    finally:
        await connection.close()
    return {"products": products, "orders": 25, "customers": 8}
