"""The full verify on its own: a copy that matches is equal chunk by chunk; a row changed, one missing
and one only the target has are each found in the chunk whose key range holds them."""

from __future__ import annotations

import uuid

import asyncpg
from migrator import moves
from migrator.moves import Mismatch
from tenantdb.provisioning import provision_dedicated
from tenantschema.tables import TENANT_TABLES

from tests.integration.migrator.conftest import endpoint, seed_shared
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret

CHUNK = 7  # several chunks per table from a few dozen rows


async def _copy_everything(
    reader: asyncpg.Connection, writer: asyncpg.Connection, source: moves.Endpoint, target: moves.Endpoint
) -> None:
    for table in TENANT_TABLES:
        after: uuid.UUID | None = moves.ZERO_ID
        while after is not None:
            after = (await moves.copy_chunk(reader, writer, source, target, table, after, 50)).upper


def _holding(mismatches: list[Mismatch], table: str, key: uuid.UUID) -> bool:
    return any(m.table == table and m.after < key and (m.upper is None or key <= m.upper) for m in mismatches)


async def test_verify_finds_each_difference_in_its_chunk(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant_id = await make_tenant()
    await seed_shared(stack_env, tenant_id, products=40)
    await provision_dedicated(
        stack_env["ADMIN_DATABASE_URL"], stack_env["OWNER_DATABASE_URL"], tenant_id, dedicated_secret()
    )
    source, target = endpoint(stack_env, tenant_id, "shared"), endpoint(stack_env, tenant_id, "dedicated")
    reader, writer = await source.connect_reader(), await target.connect_writer()
    target_reader = await target.connect_reader()
    try:
        await _copy_everything(reader, writer, source, target)
        for table in TENANT_TABLES:
            _, mismatches = await moves.verify_table(reader, target_reader, source, target, table, CHUNK)
            assert mismatches == [], table
        products_chunks, _ = await moves.verify_table(
            reader, target_reader, source, target, "products", CHUNK
        )
        assert products_chunks == 40 // CHUNK + 1

        ids = [r["id"] for r in await target_reader.fetch("SELECT id FROM products ORDER BY id")]
        changed, missing = ids[len(ids) // 2], ids[3]
        extra = uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff")  # after every key: the last chunk
        await writer.execute("UPDATE products SET name = name || ' (edited)' WHERE id = $1", changed)
        await writer.execute("DELETE FROM products WHERE id = $1", missing)
        await writer.execute(
            "INSERT INTO products (id, name, sku, price, status) "
            "VALUES ($1, 'only here', 'x-extra', 1, 'active')",
            extra,
        )
        customer = await target_reader.fetchval("SELECT id FROM customers ORDER BY id LIMIT 1")
        await writer.execute("UPDATE customers SET first_name = 'Someone else' WHERE id = $1", customer)

        _, products = await moves.verify_table(reader, target_reader, source, target, "products", CHUNK)
        _, customers = await moves.verify_table(reader, target_reader, source, target, "customers", CHUNK)
        for key in (changed, missing, extra):
            assert _holding(products, "products", key), key
        assert len(products) == 3  # three different chunks, nothing else
        assert [(m.table, m.after) for m in customers] == [("customers", moves.ZERO_ID)]
        # Only the given ranges, as a later verify pass compares them.
        _, again = await moves.verify_table(
            reader, target_reader, source, target, "products", CHUNK, [(m.after, m.upper) for m in products]
        )
        assert again == products
    finally:
        for connection in (reader, writer, target_reader):
            await connection.close()
