"""A tenant moves shared -> dedicated with the real runner: every table's rows arrive (checksums over
the canonical encoding equal, awkward values included), the directory points at the new database with
the epoch bumped, the source is fenced and, after the cleanup delay, emptied; the capture objects are
gone; the migration's progress and phases are recorded."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.integration.migrator.conftest import checksums, directory, endpoint, seed_shared, wait_for
from tests.integration.tenantdb.conftest import MakeTenant


async def _capture_objects(stack_env: dict[str, str], database: str) -> list[str]:
    side = endpoint(stack_env, uuid.uuid4(), "shared")
    url = side.owner_url.rsplit("/", 1)[0] + f"/{database}"
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            r"""SELECT relname AS name FROM pg_class WHERE relname LIKE 'mig\_%'
                UNION SELECT proname FROM pg_proc WHERE proname LIKE 'mig\_%'
                UNION SELECT tgname FROM pg_trigger WHERE tgname LIKE 'mig\_%'"""
        )
    finally:
        await connection.close()
    return [row["name"] for row in rows]


async def test_shared_to_dedicated_moves_every_row(
    stack_env: dict[str, str], migrator: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id)
    before = await checksums(stack_env, tenant_id, "shared")
    assert before["products"][0] == 40
    epoch_before = (await directory(stack_env, tenant_id))["placement_epoch"]

    response = await migrator.post("/v1/migrations", json={"tenant_id": str(tenant_id), "reason": "test"})
    assert response.status_code == 202, response.text
    migration = response.json()
    assert migration["migration_type"] == "shared_to_dedicated"
    done = await wait_for(migrator, migration["id"], {"completed", "failed", "cancelled"})
    assert done["status"] == "completed", done
    assert done["phase"] == "done"

    after = await checksums(stack_env, tenant_id, "dedicated")
    assert after == before
    placed = await directory(stack_env, tenant_id)
    assert placed["tenant_type"] == "dedicated"
    assert placed["database_name"] == f"tenant_{tenant_id.hex}"
    assert placed["placement_epoch"] == epoch_before + 1
    # The source: fenced, emptied after the cleanup delay, no capture objects left.
    left = await checksums(stack_env, tenant_id, "shared")
    assert all(rows == 0 for rows, _ in left.values()), left
    assert not await _capture_objects(stack_env, "shared")
    progress = done["progress"]
    assert progress["tables"]["products"]["rows"] == 40
    assert progress["verify"]["equal"] is True
    assert progress["freeze_ms"] < 2000
