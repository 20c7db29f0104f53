"""A tenant moves shared -> dedicated with the real runner: every table's rows arrive (checksums over
the canonical encoding equal, awkward values included), the directory points at the new database with
the epoch bumped, the source is fenced and, after the cleanup delay, emptied; the capture objects are
gone; the migration's progress and phases are recorded."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from events import topics
from migrator.moves import set_fence
from migrator.provisioner import SqlProvisioner
from tenantdb.placement import dedicated_password
from tenantschema.fencing_ddl import FENCED_SQLSTATE
from tenantschema.urls import libpq_url, with_database

from tests.integration.migrator.conftest import (
    checksums,
    directory,
    endpoint,
    migrator_settings,
    seed_shared,
    wait_for,
)
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret
from tests.support.databases import role_url
from tests.support.kafka import watch


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


def _of(messages: list[dict[str, Any]], tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    # Every message must be an envelope (an object): a JSON string would be a double-encoded payload.
    assert all(isinstance(m, dict) for m in messages), [m for m in messages if not isinstance(m, dict)][:3]
    return [m for m in messages if m.get("tenant_id") == str(tenant_id)]


async def test_shared_to_dedicated_moves_every_row(
    stack_env: dict[str, str], migrator: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id)
    before = await checksums(stack_env, tenant_id, "shared")
    assert before["products"][0] == 40
    epoch_before = (await directory(stack_env, tenant_id))["placement_epoch"]

    async with watch(stack_env["KAFKA_BOOTSTRAP_SERVERS"], topics.MIGRATIONS) as seen:
        response = await migrator.post("/v1/migrations", json={"tenant_id": str(tenant_id), "reason": "test"})
        assert response.status_code == 202, response.text
        migration = response.json()
        assert migration["migration_type"] == "shared_to_dedicated"
        done = await wait_for(migrator, migration["id"], {"completed", "failed", "cancelled"})
        assert done["status"] == "completed", done
        assert done["phase"] == "done"
        # Its events, in order, keyed by the tenant: started, one per phase, completed.
        deadline = time.monotonic() + 30
        while not any(m.get("event_type") == "migration.completed" for m in _of(seen.messages, tenant_id)):
            assert time.monotonic() < deadline, "migration.completed never arrived"
            await asyncio.sleep(0.05)
    ours = _of(seen.messages, tenant_id)
    assert [m["event_type"] for m in ours] == [
        "migration.started",
        *["migration.phase_changed"] * 6,
        "migration.completed",
    ]
    assert [m["data"]["phase"] for m in ours[1:-1]] == [
        "capture",
        "copy",
        "catch_up",
        "verify",
        "cutover",
        "cleanup",
    ]
    assert {m["data"]["migration_id"] for m in ours} == {migration["id"]}

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


async def test_the_old_placement_refuses_a_direct_write_after_cutover_and_the_move_back_restores_it(
    stack_env: dict[str, str], migrator: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    """The split-brain guard: after the move, a write for the tenant sent straight to the shared
    database as a service role (no tenantdb, so no tenantdb_enter) is refused by PostgreSQL itself;
    another tenant's write there is not. Then the move back: same rows, the dedicated database gone."""
    tenant_id = await make_tenant("shared")
    neighbour = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=15)
    before = await checksums(stack_env, tenant_id, "shared")
    made = await migrator.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
    assert made.status_code == 202, made.text
    assert (await wait_for(migrator, made.json()["id"], {"completed", "failed"}))["status"] == "completed"

    catalog_shared = role_url(stack_env, "catalog", "shared")
    connection = await asyncpg.connect(catalog_shared)
    try:
        for tenant, refused in ((tenant_id, True), (neighbour, False)):
            async with connection.transaction():
                await connection.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant))
                insert = connection.execute("INSERT INTO products (name, price) VALUES ('direct', 1.00)")
                if refused:
                    with pytest.raises(asyncpg.PostgresError) as caught:
                        await insert
                    assert caught.value.sqlstate == FENCED_SQLSTATE
                else:
                    await insert
        async with connection.transaction():
            await connection.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))
            with pytest.raises(asyncpg.PostgresError) as caught:
                await connection.execute("UPDATE products SET name = 'x'")
            assert caught.value.sqlstate == FENCED_SQLSTATE
    finally:
        await connection.close()

    back = await migrator.post("/v1/migrations", json={"tenant_id": str(tenant_id), "direction": "to_shared"})
    assert back.status_code == 202, back.text
    assert back.json()["migration_type"] == "dedicated_to_shared"
    done = await wait_for(migrator, back.json()["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert await checksums(stack_env, tenant_id, "shared") == before
    placed = await directory(stack_env, tenant_id)
    assert placed["tenant_type"] == "shared"
    assert placed["database_name"] is None
    admin = await asyncpg.connect(stack_env["ADMIN_DATABASE_URL"])
    try:
        assert not await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", f"tenant_{tenant_id.hex}"
        )
    finally:
        await admin.close()
    # Shared serves the tenant again: a direct write in its context is accepted.
    connection = await asyncpg.connect(catalog_shared)
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))
            await connection.execute("INSERT INTO products (name, price) VALUES ('back', 1.00)")
    finally:
        await connection.close()


async def test_a_target_refuses_service_writes_before_its_cutover(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    """A provisioned target is fenced until the cutover: its own role cannot write it, directly."""
    tenant_id = await make_tenant("shared")
    provisioner = SqlProvisioner(migrator_settings(stack_env))
    database = await provisioner.provision(tenant_id)
    try:
        target = endpoint(stack_env, tenant_id, "dedicated")
        await set_fence(target.owner_url, tenant_id, epoch=0, moved_to="migration:test")
        tenant_url = with_database(stack_env["SHARED_DATABASE_URL"], database).set(
            username=database, password=dedicated_password(dedicated_secret(), database)
        )
        connection = await asyncpg.connect(libpq_url(tenant_url))
        try:
            with pytest.raises(asyncpg.PostgresError) as caught:
                await connection.execute("INSERT INTO customers (email) VALUES ('a@b.c')")
            assert caught.value.sqlstate == FENCED_SQLSTATE
        finally:
            await connection.close()
    finally:
        await provisioner.drop(tenant_id)
