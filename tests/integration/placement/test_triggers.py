"""The migrator's trigger consumers and scheduler against the real PostgreSQL and Kafka: trigger
events published as usage publishes them (and, for plan and compliance, through tenancy's API with
usage running too), a migrator app consuming them from a fresh pair of consumer groups.

- the same crossing delivered three times and replayed after the move starts one move; a second
  trigger while the move runs starts none; a trigger for a dedicated tenant is skipped (recorded);
- with the limit at 1 and a move running, a compliance trigger queued after a size trigger starts
  first;
- a failed automatic move (a provisioner fault) queues its retry no sooner than the backoff, and the
  retry starts no sooner than that;
- a plan change to enterprise and `compliance_isolation: true` each move the tenant, one move each
  although tenancy's event and usage's crossing both arrive.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from events import topics
from migrator import app as migrator_app
from migrator.app import create_app
from migrator.provisioner import SqlProvisioner
from tenancy.app import create_app as create_tenancy
from tenantschema.urls import libpq_url, with_database

from tests.integration.placement.conftest import (
    decisions,
    migrations,
    placement_settings,
    publish,
    threshold_event,
    wait_decisions,
    wait_migration,
)
from tests.integration.tenancy.conftest import tenancy_settings
from tests.integration.tenantdb.conftest import MakeTenant, tenant_factory
from tests.integration.usage.conftest import end_offsets, usage_app
from tests.support.apps import serve
from tests.support.kafka import watch

ENDED = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
async def make_tenant(stack_env: dict[str, str]) -> AsyncIterator[MakeTenant]:
    async with tenant_factory(stack_env) as make:
        yield make


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_duplicates_and_replays_start_one_move_and_a_trigger_while_it_runs_none(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    tenant_id = await make_tenant("shared")
    crossing = threshold_event(tenant_id, "products")
    async with serve(create_app(await placement_settings(stack_env))) as client:
        await publish(bootstrap, topics.THRESHOLDS, [crossing, crossing, crossing])
        (queued,) = await wait_decisions(client, tenant_id, 1)
        assert (queued["trigger"], queued["action"], queued["outcome"]) == ("products", "move", "queued")
        assert queued["event_id"] == crossing["event_id"]
        assert queued["migration_id"] is not None
        # Another trigger while the move is queued or running.
        await publish(bootstrap, topics.THRESHOLDS, [threshold_event(tenant_id, "requests_per_month")])
        _, during = await wait_decisions(client, tenant_id, 2)
        done = await wait_migration(client, tenant_id, ENDED)
        assert done["status"] == "completed", done
        assert (done["trigger"], done["priority"], done["attempt"]) == ("products", 120, 1)
        assert "products" in done["reason"]
        assert (during["trigger"], during["outcome"]) == ("requests_per_month", "skipped")
        assert during["migration_id"] == queued["migration_id"]
        assert _at(during["created_at"]) < _at(done["completed_at"])  # decided while the move was active
        # The crossing replayed after the move, then a new trigger of the (now dedicated) tenant: when
        # the latter is decided the replay before it on the same partition was consumed too.
        await publish(bootstrap, topics.THRESHOLDS, [crossing, threshold_event(tenant_id, "storage_gb")])
        *_, after = await wait_decisions(client, tenant_id, 3)
        assert (after["trigger"], after["outcome"]) == ("storage_gb", "skipped")
        assert "already dedicated" in after["reason"]
        assert len(await migrations(client, tenant_id)) == 1
        assert [d["event_id"] for d in await decisions(client, tenant_id)].count(crossing["event_id"]) == 1


async def test_a_poison_trigger_goes_to_the_dead_letter_topic_and_the_next_is_decided(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    tenant_id = await make_tenant("shared")
    poison = threshold_event(tenant_id, "products")
    poison["tenant_id"] = "not-a-uuid"
    after = threshold_event(tenant_id, "plan_max_storage_gb", value=5)
    settings = await placement_settings(stack_env, migrator_runner_enabled=False)
    async with watch(bootstrap, topics.THRESHOLDS + ".dlq") as dead, serve(create_app(settings)) as client:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:  # same key, same partition: the valid event waits behind the poison one
            await producer.send_and_wait(topics.THRESHOLDS, b"{not json", key=str(tenant_id).encode())
            await producer.send_and_wait(
                topics.THRESHOLDS, json.dumps(poison).encode(), key=str(tenant_id).encode()
            )
        finally:
            await producer.stop()
        await publish(bootstrap, topics.THRESHOLDS, [after])
        (decided,) = await wait_decisions(client, tenant_id, 1)
        assert (decided["event_id"], decided["outcome"]) == (after["event_id"], "alerted")
        await dead.wait_for(lambda m: m.get("event_id") == poison["event_id"], timeout=30)
        assert b"{not json" in dead.raw
        group = next(
            h["x-dlq-group"] for h, m in zip(dead.headers, dead.raw, strict=True) if m == b"{not json"
        )
        assert group == f"{settings.placement_group_id}.thresholds".encode()


async def test_compliance_queued_after_a_size_trigger_starts_first_under_a_limit_of_one(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    manual, size, compliance = [await make_tenant("shared") for _ in range(3)]
    settings = await placement_settings(stack_env, placement_max_concurrent_moves=1)
    # A long transaction holding the shared products table (ROW EXCLUSIVE, as any writer does): every
    # move's capture (CREATE TRIGGER) waits for it, so the manual move holds the only slot until then.
    holder = await asyncpg.connect(libpq_url(with_database(stack_env["ADMIN_DATABASE_URL"], "shared")))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE products IN ROW EXCLUSIVE MODE")
        async with serve(create_app(settings)) as client:
            made = await client.post("/v1/migrations", json={"tenant_id": str(manual), "reason": "by hand"})
            assert made.status_code == 202, made.text
            await wait_migration(client, manual, {"in_progress"})
            await publish(bootstrap, topics.THRESHOLDS, [threshold_event(size, "products")])
            await wait_decisions(client, size, 1)
            await publish(
                bootstrap, topics.THRESHOLDS, [threshold_event(compliance, "compliance_isolation", value=1)]
            )
            await wait_decisions(client, compliance, 1)
            waiting = {t: (await migrations(client, t))[0] for t in (size, compliance)}
            assert {t: m["status"] for t, m in waiting.items()} == {size: "pending", compliance: "pending"}
            assert (await migrations(client, manual))[0]["status"] == "in_progress"  # still the slot's
            await transaction.rollback()
            moves = {t: await wait_migration(client, t, ENDED) for t in (manual, size, compliance)}
        assert {t: m["status"] for t, m in moves.items()} == dict.fromkeys(moves, "completed")
        assert moves[compliance]["priority"] > moves[size]["priority"]
        assert moves[compliance]["started_at"] > moves[size]["started_at"]  # queued after
        assert moves[compliance]["progress"]["scheduled_at"] < moves[size]["progress"]["scheduled_at"]
        # One at a time: the size move got its slot only once the compliance move had flipped (a move
        # waiting for its cleanup holds no slot). Both are stamped by this machine's clock, the flip
        # in the transaction the scheduler has to see committed first.
        assert moves[size]["progress"]["scheduled_at"] >= moves[compliance]["progress"]["flipped_at"]
    finally:
        await holder.close()


class FailingOnce(SqlProvisioner):
    """The provisioner with a fault: its first provisioning of each tenant fails."""

    failed: set[uuid.UUID] = set()

    async def provision(self, tenant_id: uuid.UUID) -> str:
        if tenant_id not in self.failed:
            self.failed.add(tenant_id)
            raise RuntimeError("injected provisioner fault")
        return await super().provision(tenant_id)


async def test_a_failed_automatic_move_is_retried_after_its_backoff(
    stack_env: dict[str, str], make_tenant: MakeTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    tenant_id = await make_tenant("shared")
    monkeypatch.setattr(migrator_app, "SqlProvisioner", FailingOnce)
    backoff = 2.0
    settings = await placement_settings(
        stack_env, placement_retry_backoff_seconds=backoff, placement_retry_backoff_max_seconds=60
    )
    async with serve(create_app(settings)) as client:
        await publish(bootstrap, topics.THRESHOLDS, [threshold_event(tenant_id, "storage_gb", value=10)])
        failed = await wait_migration(client, tenant_id, ENDED, index=0)
        assert failed["status"] == "failed"
        assert "injected provisioner fault" in failed["error_message"]
        retry = (await migrations(client, tenant_id))[1]
        assert (retry["trigger"], retry["attempt"], retry["priority"]) == ("storage_gb", 2, 110)
        wait = _at(retry["not_before"]) - _at(failed["completed_at"])
        assert timedelta(seconds=backoff) <= wait <= timedelta(seconds=backoff + 1.5), wait
        first, second = await decisions(client, tenant_id)
        assert (first["outcome"], first["migration_id"]) == ("queued", failed["id"])
        assert (second["event_type"], second["outcome"], second["migration_id"]) == (
            "migration.failed",
            "queued",
            retry["id"],
        )
        assert "backoff 2 s" in second["reason"]
        done = await wait_migration(client, tenant_id, ENDED, index=1)
    assert done["status"] == "completed", done
    assert done["progress"]["scheduled_at"] >= _at(retry["not_before"]).timestamp()


async def test_enterprise_and_compliance_each_move_the_tenant_once(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    enterprise, isolated = await make_tenant("shared"), await make_tenant("shared")
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    settings = await placement_settings(stack_env, placement_max_concurrent_moves=2)
    start_at = await end_offsets(bootstrap)
    async with (
        serve(create_tenancy(tenancy_settings(stack_env))) as tenancy,
        usage_app(stack_env, start_at=start_at),  # its plan_enterprise / compliance crossings too
        serve(create_app(settings)) as client,
    ):
        changes: dict[uuid.UUID, dict[str, Any]] = {
            enterprise: {"plan": "enterprise"},
            isolated: {"compliance_isolation": True},
        }
        for tenant_id, change in changes.items():
            response = await tenancy.patch(f"/v1/tenants/{tenant_id}", json=change)
            assert response.status_code == 200, response.text
        moves = {t: await wait_migration(client, t, ENDED) for t in changes}
        assert {t: m["status"] for t, m in moves.items()} == dict.fromkeys(changes, "completed")
        assert (moves[enterprise]["trigger"], moves[isolated]["trigger"]) == (
            "plan_enterprise",
            "compliance_isolation",
        )
        # Both causes arrive (tenancy's event and usage's crossing): the second is the same cause.
        for tenant_id in changes:
            found = await wait_decisions(client, tenant_id, 2)
            assert [d["outcome"] for d in found] == ["queued", "skipped"], found
            assert {d["event_type"] for d in found} == {
                "tenant.threshold_crossed",
                "tenant.plan_changed" if tenant_id == enterprise else "tenant.updated",
            }
            assert len(await migrations(client, tenant_id)) == 1
        tenants = {t: (await tenancy.get(f"/v1/tenants/{t}")).json() for t in changes}
    assert {t: body["tenant_type"] for t, body in tenants.items()} == dict.fromkeys(changes, "dedicated")
