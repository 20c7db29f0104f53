"""The decisions where on-call looks: `GET /v1/placement/decisions` (filters, paging, problems for
what a client can get wrong) and `tenantctl migrations decisions` / `migrations list` against a
migrator process that decided on real trigger events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from events import topics
from migrator.app import create_app

from tests.integration.placement.conftest import (
    placement_groups_at_end,
    placement_settings,
    publish,
    threshold_event,
    wait_decisions,
    wait_migration,
)
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret, tenant_factory
from tests.support.apps import serve
from tests.support.hostile import assert_problem
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
async def make_tenant(stack_env: dict[str, str]) -> AsyncIterator[MakeTenant]:
    async with tenant_factory(stack_env) as make:
        yield make


async def test_decisions_filter_page_and_refuse_bad_queries(
    stack_env: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant_id = await make_tenant("shared")
    # The matrix overridden: products only recommends here (nothing is queued, nothing moves).
    settings = await placement_settings(
        stack_env, migrator_runner_enabled=False, placement_matrix={"products": {"action": "recommend"}}
    )
    async with serve(create_app(settings)) as client:
        metrics = ["plan_max_products", "plan_max_requests_per_month", "plan_max_storage_gb", "products"]
        await publish(
            stack_env["KAFKA_BOOTSTRAP_SERVERS"],
            topics.THRESHOLDS,
            [threshold_event(tenant_id, m) for m in metrics],
        )
        found = await wait_decisions(client, tenant_id, 4)
        assert [(d["trigger"], d["outcome"]) for d in found] == [
            ("plan_max_products", "alerted"),
            ("plan_max_requests_per_month", "alerted"),
            ("plan_max_storage_gb", "alerted"),
            ("products", "recommended"),
        ]
        assert [
            m["status"]
            for m in (await client.get("/v1/migrations", params={"tenant_id": str(tenant_id)})).json()[
                "items"
            ]
        ] == []
        # Pages of one, newest first, until the end.
        seen: list[str] = []
        params: dict[str, str | int] = {"tenant_id": str(tenant_id), "limit": 1}
        while True:
            page = (await client.get("/v1/placement/decisions", params=params)).json()
            seen += [d["id"] for d in page["items"]]
            if not page["next_cursor"]:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == [d["id"] for d in reversed(found)]
        alerted = await client.get(
            "/v1/placement/decisions", params={"tenant_id": str(tenant_id), "outcome": "alerted"}
        )
        assert {d["trigger"] for d in alerted.json()["items"]} == set(metrics[:3])
        only = await client.get(
            "/v1/placement/decisions", params={"tenant_id": str(tenant_id), "trigger": "products"}
        )
        assert [d["trigger"] for d in only.json()["items"]] == ["products"]
        # What a client can get wrong: problems naming the field, never a 500.
        assert_problem(
            await client.get("/v1/placement/decisions", params={"trigger": "bandwidth"}), 422, "trigger"
        )
        assert_problem(
            await client.get("/v1/placement/decisions", params={"tenant_id": "x"}), 422, "tenant_id"
        )
        assert_problem(await client.get("/v1/placement/decisions", params={"limit": 0}), 422, "limit")
        assert_problem(
            await client.get("/v1/placement/decisions", params={"cursor": "garbage"}), 400, "cursor"
        )
        migrations_cursor = (await client.get("/v1/migrations", params={"limit": 1})).json()["next_cursor"]
        if migrations_cursor:  # another list's cursor is not this list's
            refused = await client.get("/v1/placement/decisions", params={"cursor": migrations_cursor})
            assert_problem(refused, 400, "cursor")


def tenantctl(urls: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantctl", *args],
        env={**os.environ, **urls},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_tenantctl_shows_the_decisions_and_each_move_s_trigger(
    stack_env: dict[str, str], make_tenant: MakeTenant, tmp_path: Path
) -> None:
    tenant_id = await make_tenant("shared")
    env = {
        **stack_env,
        "DEDICATED_PASSWORD_SECRET": dedicated_secret(),
        "LOG_LEVEL": "WARNING",
        "PLACEMENT_GROUP_ID": await placement_groups_at_end(stack_env["KAFKA_BOOTSTRAP_SERVERS"]),
        "PLACEMENT_OFFSET_RESET": "latest",
        "MIGRATOR_CLEANUP_DELAY_SECONDS": "0.5",
        "MIGRATOR_POLL_INTERVAL_SECONDS": "0.2",
    }
    process = ServiceProcess("migrator", env, tmp_path / "migrator.log")
    try:
        await process.wait_ready()
        urls = {"MIGRATOR_URL": process.url}
        crossing = threshold_event(tenant_id, "requests_per_month", value=100_000)
        await publish(stack_env["KAFKA_BOOTSTRAP_SERVERS"], topics.THRESHOLDS, [crossing])
        async with httpx.AsyncClient(base_url=process.url, timeout=30) as client:
            (decision,) = await wait_decisions(client, tenant_id, 1)
            moved = await wait_migration(client, tenant_id, {"completed", "failed"})
        assert moved["status"] == "completed", moved
        listed = tenantctl(urls, "migrations", "decisions", "--tenant", str(tenant_id), "--json")
        assert listed.returncode == 0, listed.stderr
        assert [d["event_id"] for d in json.loads(listed.stdout)["items"]] == [crossing["event_id"]]
        human = tenantctl(urls, "migrations", "decisions", "--tenant", str(tenant_id))
        assert f"requests_per_month  move->queued  migration={moved['id']}" in human.stdout
        assert "1 decision(s)" in human.stdout
        moves = tenantctl(urls, "migrations", "list", "--tenant", str(tenant_id))
        assert "completed/done" in moves.stdout
        assert "trigger=requests_per_month#1" in moves.stdout
        assert decision["migration_id"] == moved["id"]
        none = tenantctl(urls, "migrations", "decisions", "--tenant", str(uuid.uuid4()))
        assert none.returncode == 0
        assert "0 decision(s)" in none.stdout
        wrong = tenantctl(urls, "migrations", "decisions", "--outcome", "maybe")
        assert wrong.returncode == 1
        assert "422" in wrong.stderr
    finally:
        process.stop()
