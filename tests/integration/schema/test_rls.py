"""Row Level Security on the shared database, connected as the services' role (`app_user`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture
async def conn(shared_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(shared_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _as_tenant(conn: asyncpg.Connection, tenant: uuid.UUID | None) -> None:
    if tenant is not None:
        await conn.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant))


async def _insert_product(conn: asyncpg.Connection, tenant: uuid.UUID, sku: str) -> uuid.UUID:
    async with conn.transaction():
        await _as_tenant(conn, tenant)
        product_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO products (name, price, sku) VALUES ('p', 1, $1) RETURNING id", sku
        )
    return product_id


async def _visible(
    conn: asyncpg.Connection, tenant: uuid.UUID | None, ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    async with conn.transaction():
        await _as_tenant(conn, tenant)
        rows = await conn.fetch("SELECT id FROM products WHERE id = ANY($1::uuid[])", ids)
    return {row["id"] for row in rows}


async def test_runs_as_a_role_that_rls_applies_to(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert row is not None
    assert (row["rolsuper"], row["rolbypassrls"]) == (False, False)


async def test_a_tenant_sees_only_its_rows(conn: asyncpg.Connection) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    a_rows = [await _insert_product(conn, a, f"sku-{i}") for i in range(3)]
    b_rows = [await _insert_product(conn, b, f"sku-{i}") for i in range(2)]
    everything = a_rows + b_rows
    assert await _visible(conn, a, everything) == set(a_rows)
    assert await _visible(conn, b, everything) == set(b_rows)


async def test_no_context_sees_nothing_and_writes_nothing(conn: asyncpg.Connection) -> None:
    a = uuid.uuid4()
    row = await _insert_product(conn, a, "x")
    assert await _visible(conn, None, [row]) == set()
    assert await conn.fetchval("SELECT count(*) FROM products") == 0
    with pytest.raises(asyncpg.PostgresError):
        await conn.execute("INSERT INTO products (name, price) VALUES ('p', 1)")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("INSERT INTO products (tenant_id, name, price) VALUES ($1, 'p', 1)", a)
    assert await conn.execute("UPDATE products SET name = 'hacked' WHERE id = $1", row) == "UPDATE 0"
    assert await conn.execute("DELETE FROM products WHERE id = $1", row) == "DELETE 0"


async def test_an_empty_reset_context_sees_nothing(conn: asyncpg.Connection) -> None:
    # After a transaction-local set_config, the setting reads '' in later transactions, not NULL.
    row = await _insert_product(conn, uuid.uuid4(), "x")
    assert await conn.fetchval("SELECT current_setting('app.current_tenant_id', true)") == ""
    assert await _visible(conn, None, [row]) == set()


async def test_writing_another_tenants_id_is_refused(conn: asyncpg.Connection) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    row = await _insert_product(conn, a, "mine")
    for statement, args in (
        ("INSERT INTO products (tenant_id, name, price) VALUES ($1, 'p', 1)", (b,)),
        ("UPDATE products SET tenant_id = $1 WHERE id = $2", (b, row)),
    ):
        async with conn.transaction():
            await _as_tenant(conn, a)
            # WITH CHECK refuses a row that would belong to another tenant.
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.execute(statement, *args)
    assert await _visible(conn, a, [row]) == {row}


async def test_row_security_off_does_not_reveal_other_tenants(conn: asyncpg.Connection) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    b_row = await _insert_product(conn, b, "theirs")
    for context in (a, None):
        async with conn.transaction():
            await conn.execute("SET LOCAL row_security = off")
            await _as_tenant(conn, context)
            # A role without BYPASSRLS gets an error, never the unfiltered rows.
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.fetch("SELECT id FROM products WHERE id = $1", b_row)


async def test_partitions_are_not_reachable_directly(conn: asyncpg.Connection) -> None:
    for part in range(4):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM orders_part_{part}")


async def test_orders_are_isolated_across_partitions(conn: asyncpg.Connection) -> None:
    tenants = [uuid.uuid4() for _ in range(8)]  # enough to land in several partitions
    for tenant in tenants:
        async with conn.transaction():
            await _as_tenant(conn, tenant)
            await conn.execute(
                "INSERT INTO orders (order_number, customer_email, total_amount, subtotal_amount, items) "
                "VALUES ('1001', 'c@example.com', 10, 10, '[]')"
            )
    for tenant in tenants:
        async with conn.transaction():
            await _as_tenant(conn, tenant)
            assert await conn.fetchval("SELECT count(*) FROM orders WHERE order_number = '1001'") == 1


async def test_sku_is_unique_per_tenant_not_globally(conn: asyncpg.Connection) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await _insert_product(conn, a, "SAME")
    await _insert_product(conn, b, "SAME")
    with pytest.raises(asyncpg.UniqueViolationError):
        await _insert_product(conn, a, "SAME")
