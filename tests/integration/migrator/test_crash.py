"""SIGKILL the migrator process at each phase and inside the cutover (MIGRATOR_CRASH_AT), start it
again: the move completes with equal checksums, the tenant was never left frozen by a crash before
its fence, and nothing the move made is left behind (capture objects, fences, databases)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.migrator.conftest import checksums, directory, endpoint, seed_shared, wait_for
from tests.integration.migrator.test_move import _capture_objects
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret
from tests.support.databases import role_url
from tests.support.processes import ServiceProcess

POINTS = [
    "provision",
    "capture:done",
    "copy:chunk",
    "catch_up",
    "verify:pass",
    "cutover:held",
    "cutover:fenced",
    "cutover:flipped",
    "cleanup:deleting",
]
# Before these the source has no fence of the move: a crash there must leave the tenant writable.
UNFENCED = {"provision", "capture:done", "copy:chunk", "catch_up", "verify:pass", "cutover:held"}


def _env(stack_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **stack_env,
        "DEDICATED_PASSWORD_SECRET": dedicated_secret(),
        "MIGRATOR_POLL_INTERVAL_SECONDS": "0.2",
        "MIGRATOR_COPY_CHUNK_ROWS": "9",
        "MIGRATOR_CLEANUP_DELAY_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
        "PLACEMENT_AUTO_ENABLED": "false",  # only the test's own moves
        **extra,
    }


async def _writable(stack_env: dict[str, str], tenant_id: uuid.UUID) -> None:
    """A write of the tenant on the shared database, as tenantdb does it, goes through at once."""
    connection = await asyncpg.connect(role_url(stack_env, "catalog", "shared"))
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))
            await connection.execute("SELECT tenantdb_enter($1, true, 200)", tenant_id)
            await connection.execute(
                "UPDATE customers SET notes = 'after crash' WHERE email = 'c1@example.com'"
            )
    finally:
        await connection.close()


async def _killed_moving(stack_env: dict[str, str], tenant_id: uuid.UUID, tmp_path: Path, **env: str) -> str:
    """A migrator process (with `env`, a MIGRATOR_CRASH_AT among it) asked to move the tenant, waited
    for until it SIGKILLed itself; returns the migration id."""
    doomed = ServiceProcess("migrator", _env(stack_env, **env), tmp_path / "first.log")
    try:
        await doomed.wait_ready()
        async with httpx.AsyncClient(base_url=doomed.url) as client:
            made = await client.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
            assert made.status_code == 202, made.text
        deadline = time.monotonic() + 60
        while doomed.process.poll() is None:
            assert time.monotonic() < deadline, f"the migrator never reached {env.get('MIGRATOR_CRASH_AT')}"
            await asyncio.sleep(0.05)
        assert doomed.process.returncode == -9, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        doomed.stop()
    migration_id: str = made.json()["id"]
    return migration_id


async def _completed_by_another(
    stack_env: dict[str, str], migration_id: str, tmp_path: Path, **env: str
) -> dict[str, Any]:
    """A second migrator process takes the move up; it completes. Returns the migration."""
    survivor = ServiceProcess("migrator", _env(stack_env, **env), tmp_path / "second.log")
    try:
        await survivor.wait_ready()
        async with httpx.AsyncClient(base_url=survivor.url) as client:
            done = await wait_for(client, migration_id, {"completed", "failed", "cancelled"})
    finally:
        survivor.stop()
    assert done["status"] == "completed", (done, (tmp_path / "second.log").read_text()[-3000:])
    return done


@pytest.mark.parametrize("point", POINTS)
async def test_killed_anywhere_the_move_resumes_and_completes(
    stack_env: dict[str, str], make_tenant: MakeTenant, tmp_path: Path, point: str
) -> None:
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=30)
    migration_id = await _killed_moving(stack_env, tenant_id, tmp_path, MIGRATOR_CRASH_AT=point)

    if point in UNFENCED:
        await _writable(stack_env, tenant_id)
    before = await checksums(stack_env, tenant_id, "shared") if point in UNFENCED else None

    done = await _completed_by_another(stack_env, migration_id, tmp_path)
    # Killed inside the cutover: the keys changed since the full verification died with that process,
    # so the survivor verified everything again before its freeze.
    assert ("reverified_at" in done["progress"]) == (point in {"cutover:held", "cutover:fenced"})
    placed = await directory(stack_env, tenant_id)
    assert placed["tenant_type"] == "dedicated"
    after = await checksums(stack_env, tenant_id, "dedicated")
    if before is not None:
        assert after == before
    assert after["products"][0] == 30
    assert after["customers"][0] == 8
    # Nothing of the move's left on the source: no capture objects, no rows.
    assert not await _capture_objects(stack_env, "shared")
    assert not await _capture_objects(stack_env, f"tenant_{tenant_id.hex}")
    source = await checksums(stack_env, tenant_id, "shared")
    assert all(rows == 0 for rows, _ in source.values())
    target = endpoint(stack_env, tenant_id, "dedicated")
    connection = await asyncpg.connect(target.owner_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM tenant_fences") == 0
    finally:
        await connection.close()


async def test_killed_after_progress_was_saved_the_copy_resumes_from_the_saved_key(
    stack_env: dict[str, str], make_tenant: MakeTenant, tmp_path: Path
) -> None:
    """Killed after a chunk was copied but before its progress was saved: the target holds rows past
    the saved key. The next process continues from that key (not from the start), replaces what lies
    past it, and every table ends with exactly its rows, counted once."""
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=30)
    before = await checksums(stack_env, tenant_id, "shared")
    # Chunks of 9, each saved: the categories' chunk, then products' 9 and 18 are saved; the kill
    # comes after products' third chunk (rows 19-27) reached the target.
    saving = {"MIGRATOR_COPY_PROGRESS_SECONDS": "0"}
    migration_id = await _killed_moving(
        stack_env, tenant_id, tmp_path, MIGRATOR_CRASH_AT="copy:chunk@4", **saving
    )
    platform = await asyncpg.connect(role_url(stack_env, "migrator", "platform"))
    try:
        saved = await platform.fetchval(
            "SELECT progress->'tables'->'products' FROM tenant_migrations WHERE id = $1",
            uuid.UUID(migration_id),
        )
    finally:
        await platform.close()
    saved = json.loads(saved) if isinstance(saved, str) else saved
    assert saved["rows"] == 18, saved
    assert saved["last_id"] is not None, saved
    assert not saved["done"], saved
    target = endpoint(stack_env, tenant_id, "dedicated")
    connection = await asyncpg.connect(target.admin_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM products") == 27  # one chunk unsaved
    finally:
        await connection.close()

    done = await _completed_by_another(stack_env, migration_id, tmp_path, **saving)
    tables = done["progress"]["tables"]
    assert {table: state["rows"] for table, state in tables.items()} == {
        table: rows for table, (rows, _) in before.items()
    }
    assert await checksums(stack_env, tenant_id, "dedicated") == before
