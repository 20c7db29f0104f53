"""The copy's chunk-by-chunk comparison (runner.EarlyVerify) lets the full verification skip a table,
so what changes in such a table after its chunks were compared must still be checked, inside the
freeze. Here a product in a compared chunk changes on the source during the copy, and the catch-up's
first application of it is sabotaged (the target gets another value, as a faulty apply would write):
only the freeze's check by key can see it. The cutover aborts on it, the key is applied again, and
the move completes with the tenant equal on both sides."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from migrator import moves
from migrator.app import create_app
from tenantdb.provisioning import drop_dedicated, provision_dedicated
from tenantschema.tables import TENANT_TABLES

from tests.integration.migrator.conftest import endpoint, migrator_settings, seed_shared, wait_for
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret
from tests.support.apps import serve


async def test_a_row_changed_after_its_chunk_was_compared_is_checked_in_the_freeze(
    stack_env: dict[str, str], make_tenant: MakeTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=40)
    source = endpoint(stack_env, tenant_id, "shared")
    target = endpoint(stack_env, tenant_id, "dedicated")
    changed: dict[str, Any] = {}
    copy_chunk, apply_keys = moves.copy_chunk, moves.apply_keys

    async def copying(
        reader: Any, writer: Any, src: Any, dst: Any, table: str, after: uuid.UUID, rows: int
    ) -> Any:
        chunk = await copy_chunk(reader, writer, src, dst, table, after, rows)
        if table == "products" and "id" not in changed and after != moves.ZERO_ID:
            # The first chunk was compared before this one's comparison could start: change a row of it.
            owner = await asyncpg.connect(source.owner_url)
            try:
                async with owner.transaction():
                    await owner.execute(
                        "SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id)
                    )
                    changed["id"] = await owner.fetchval(
                        "UPDATE products SET name = 'changed after its chunk was compared' WHERE id = "
                        "(SELECT id FROM products WHERE tenant_id = $1 ORDER BY id LIMIT 1) RETURNING id",
                        tenant_id,
                    )
            finally:
                await owner.close()
        return chunk

    async def applying(reader: Any, writer: Any, src: Any, dst: Any, keys: dict[str, set[uuid.UUID]]) -> int:
        written = await apply_keys(reader, writer, src, dst, keys)
        if changed.get("id") in keys.get("products", set()) and not changed.get("sabotaged"):
            changed["sabotaged"] = True
            async with moves.tenant_transaction(writer, dst):
                await writer.execute(
                    "UPDATE products SET name = 'a faulty apply' WHERE id = $1", changed["id"]
                )
        return written

    monkeypatch.setattr(moves, "copy_chunk", copying)
    monkeypatch.setattr(moves, "apply_keys", applying)
    async with serve(create_app(migrator_settings(stack_env))) as client:
        made = await client.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
        assert made.status_code == 202, made.text
        done = await wait_for(client, made.json()["id"], {"completed", "failed", "cancelled"})
    assert done["status"] == "completed", done
    assert changed.get("sabotaged"), "the changed row was never applied by the catch-up"
    assert done["cutover_attempts"] >= 1
    assert done["progress"]["last_cutover_abort"].startswith("verify")
    connection = await target.connect_reader()
    try:
        name = await connection.fetchval("SELECT name FROM products WHERE id = $1", changed["id"])
    finally:
        await connection.close()
    assert name == "changed after its chunk was compared"


async def test_a_chunk_digest_equals_what_the_copy_sent_and_sees_the_smallest_difference(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    """moves.chunk_digest reads a key range back from the target as binary COPY; it equals the digest
    of the stream copy_chunk sent for every chunk of every table (the seed's awkward values: unicode,
    20,000-character texts, NULLs, JSONB with floats and nested arrays, microsecond times), and
    differs after the smallest change a faulty write could make: a time by a microsecond, a price by
    a cent, a JSON number 1.5 -> 1.50 (the same number, another text), a NULL made ''."""
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=25)
    source = endpoint(stack_env, tenant_id, "shared")
    target = endpoint(stack_env, tenant_id, "dedicated")
    await provision_dedicated(
        stack_env["ADMIN_DATABASE_URL"], stack_env["OWNER_DATABASE_URL"], tenant_id, dedicated_secret()
    )
    reader, writer, back = await source.connect_reader(), await target.connect_writer(), None
    try:
        back = await target.connect_reader()
        chunks: list[tuple[str, uuid.UUID, moves.Chunk]] = []
        for table in TENANT_TABLES:
            after = moves.ZERO_ID
            while (chunk := await moves.copy_chunk(reader, writer, source, target, table, after, 7)).upper:
                assert chunk.upper is not None
                chunks.append((table, after, chunk))
                assert await moves.chunk_digest(back, target, table, after, chunk.upper) == chunk.digest
                after = chunk.upper
        assert {table for table, _, _ in chunks} >= {"products", "product_categories", "customers", "orders"}

        def first_of(table: str) -> tuple[uuid.UUID, moves.Chunk]:
            return next((after, chunk) for t, after, chunk in chunks if t == table)

        # Each change below really changes its row (the one before it set what it changes from).
        products_after, products = first_of("products")
        categories_after, categories = first_of("product_categories")
        product = await back.fetchval(
            "SELECT id FROM products WHERE id > $1 ORDER BY id LIMIT 1", products_after
        )
        category = await back.fetchval(
            "SELECT id FROM product_categories WHERE id > $1 AND id <= $2 AND description IS NOT NULL "
            "ORDER BY id LIMIT 1",
            categories_after,
            categories.upper,
        )
        assert category is not None, "the seed gives some categories a description"
        await writer.execute("""UPDATE products SET attributes = '{"w": 2}' WHERE id = $1""", product)
        for table, after, chunk, key, change in (
            (
                "products",
                products_after,
                products,
                product,
                "UPDATE products SET updated_at = updated_at + interval '1 microsecond' WHERE id = $1",
            ),
            (
                "products",
                products_after,
                products,
                product,
                "UPDATE products SET price = price + 0.01 WHERE id = $1",
            ),
            (
                "products",
                products_after,
                products,
                product,
                """UPDATE products SET attributes = '{"w": 1.5}' WHERE id = $1""",
            ),
            (
                "products",
                products_after,
                products,
                product,
                """UPDATE products SET attributes = '{"w": 1.50}' WHERE id = $1""",
            ),
            (
                "product_categories",
                categories_after,
                categories,
                category,
                "UPDATE product_categories SET description = NULL WHERE id = $1",
            ),
            (
                "product_categories",
                categories_after,
                categories,
                category,
                "UPDATE product_categories SET description = '' WHERE id = $1",
            ),
        ):
            assert chunk.upper is not None
            before = await moves.chunk_digest(back, target, table, after, chunk.upper)
            await writer.execute(change, key)
            assert await moves.chunk_digest(back, target, table, after, chunk.upper) != before, change
    finally:
        for connection in (reader, writer, back):
            if connection is not None:
                await connection.close()
        await drop_dedicated(stack_env["ADMIN_DATABASE_URL"], tenant_id)
