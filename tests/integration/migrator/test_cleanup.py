"""The source's cleanup on its own: a moved tenant's rows deleted from the shared database in small
batches walked by key, each table to its end, and nobody else's row touched."""

from __future__ import annotations

import uuid

from migrator import moves

from tests.integration.migrator.conftest import checksums, endpoint, seed_shared
from tests.integration.tenantdb.conftest import MakeTenant

BATCH = 7  # several batches per table from a few dozen rows


async def test_cleanup_deletes_the_tenant_batch_by_batch_and_nothing_else(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    moved, neighbour = await make_tenant(), await make_tenant()
    await seed_shared(stack_env, moved, products=40)
    await seed_shared(stack_env, neighbour, products=40)
    seeded = {table: rows for table, (rows, _) in (await checksums(stack_env, moved, "shared")).items()}
    assert seeded["products"] == 40
    neighbour_before = await checksums(stack_env, neighbour, "shared")
    source = endpoint(stack_env, moved, "shared")
    writer = await source.connect_writer()
    after: dict[str, uuid.UUID] = {}
    batches: list[int] = []
    try:
        while deleted := await moves.delete_tenant_batch(writer, source, BATCH, after):
            assert deleted <= BATCH * len(seeded)  # at most a batch per table
            batches.append(deleted)
    finally:
        await writer.close()
    assert sum(batches) == sum(seeded.values())
    assert len(batches) == -(-max(seeded.values()) // BATCH)  # the largest table's batches
    left = await checksums(stack_env, moved, "shared")
    assert all(rows == 0 for rows, _ in left.values()), left
    assert await checksums(stack_env, neighbour, "shared") == neighbour_before
