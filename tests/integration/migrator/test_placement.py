"""The placement advisor against the real platform database: tenants of every kind are seeded
directly (`tenants`, `tenant_usage_metrics`, `usage_thresholds`, `tenant_migrations`, as the schema
owner) and `GET /v1/placement/plan` must say what the table below says, with totals recomputed here
from the configured cost model; `tenantctl placement plan --apply` asks for exactly those moves (a
tenant already moving is reported, not fatal); and a dedicated tenant downgraded to basic and idle for
N days is demoted by the plan and ends on the shared database with equal checksums."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from migrator.app import create_app
from tenantschema.urls import libpq_url

from tests.integration.migrator.conftest import checksums, directory, migrator_settings, seed_shared, wait_for
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret
from tests.support.apps import serve
from tests.support.processes import ServiceProcess

# The cost model of these tests (not the defaults, so the configuration is seen to apply): shared
# instances of 4 tenants at $200, dedicated databases at $50 + $5 overhead.
PLACEMENT_ENV = {
    "PLACEMENT_SHARED_INSTANCE_CAPACITY_TENANTS": "4",
    "PLACEMENT_DEDICATED_OVERHEAD_MONTHLY_COST": "5",
}
INSTANCE, CAPACITY, DEDICATED = 200.0, 4, 55.0


@dataclass(frozen=True)
class Case:
    name: str
    now: str
    recommended: str
    rule: str


# What the advisor must recommend for the seeded tenants (`_seed` makes each as its name says).
EXPECTED = [
    Case("small", "shared", "shared", "below_triggers"),
    Case("just_below", "shared", "shared", "below_triggers"),
    Case("at_products", "shared", "dedicated", "products"),
    Case("at_requests", "shared", "dedicated", "requests_per_month"),
    Case("big_storage", "shared", "dedicated", "storage_gb"),
    Case("enterprise", "shared", "dedicated", "plan_enterprise"),
    Case("compliance", "shared", "dedicated", "compliance_isolation"),
    Case("idle", "dedicated", "shared", "idle"),
    Case("dedicated_enterprise", "dedicated", "dedicated", "plan_enterprise"),
    Case("in_band", "dedicated", "dedicated", "hysteresis"),
    Case("recent_crossing", "dedicated", "dedicated", "recently_active"),
    Case("old_peak", "dedicated", "dedicated", "hysteresis"),
]


class Owner:
    """Seeding as the schema owner, days counted back from today (UTC)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.today = datetime.now(UTC).date()

    async def tenant(self, tenant_id: uuid.UUID, **columns: Any) -> None:
        sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(columns))
        await self.connection.execute(
            f"UPDATE tenants SET {sets} WHERE id = $1", tenant_id, *columns.values()
        )

    async def day(
        self, tenant_id: uuid.UUID, days_ago: int, requests: int = 0, storage_gb: float = 0
    ) -> None:
        await self.connection.execute(
            "INSERT INTO tenant_usage_metrics (tenant_id, metric_date, requests_count, storage_used_gb) "
            "VALUES ($1, $2, $3, $4)",
            tenant_id,
            self.today - timedelta(days=days_ago),
            requests,
            storage_gb,
        )

    async def crossing(self, tenant_id: uuid.UUID, metric: str, crossed_ago: int, resolved_ago: int) -> None:
        now = datetime.now(UTC)
        await self.connection.execute(
            "INSERT INTO usage_thresholds (tenant_id, metric, period, value, threshold, event_id, "
            "crossed_at, resolved_at) VALUES ($1, $2, 'episode-1', 10000, 10000, $3, $4, $5)",
            tenant_id,
            metric,
            uuid.uuid4(),
            now - timedelta(days=crossed_ago),
            now - timedelta(days=resolved_ago),
        )

    async def moved_days_ago(self, tenant_id: uuid.UUID, days: int) -> None:
        """The tenant's last move completed `days` ago (a real move's row, backdated)."""
        updated = await self.connection.execute(
            "UPDATE tenant_migrations SET completed_at = now() - make_interval(days => $2), "
            "started_at = now() - make_interval(days => $2) WHERE tenant_id = $1 AND status = 'completed'",
            tenant_id,
            days,
        )
        if updated == "UPDATE 0":
            await self.connection.execute(
                "INSERT INTO tenant_migrations (tenant_id, migration_type, from_state, to_state, status, "
                "phase, started_at, completed_at) VALUES ($1, 'shared_to_dedicated', '{}', '{}', "
                "'completed', 'done', now() - make_interval(days => $2), now() - make_interval(days => $2))",
                tenant_id,
                days,
            )


async def _seed(owner: Owner, ids: dict[str, uuid.UUID]) -> None:
    small_days = [(d, 100, 0.2) for d in range(40)]  # 40 quiet days: 3,000 requests a 30-day window
    await owner.tenant(ids["small"], product_count=120, monthly_requests=2_000)
    await owner.tenant(ids["just_below"], product_count=9_999, monthly_requests=99_999)
    await owner.day(ids["just_below"], 0, storage_gb=9.999)
    await owner.tenant(ids["at_products"], plan="professional", product_count=10_000)
    await owner.tenant(ids["at_requests"], plan="professional", monthly_requests=100_000)
    # Yesterday's storage figure counts: today's row (made by request counting) says 0, no measurement.
    await owner.day(ids["big_storage"], 1, storage_gb=12.5)
    await owner.day(ids["big_storage"], 0, requests=50)
    await owner.tenant(ids["enterprise"], plan="enterprise")
    await owner.tenant(ids["compliance"], compliance_isolation=True, product_count=20_000)

    await owner.tenant(ids["idle"], product_count=40, monthly_requests=500)
    for days_ago, requests, gigabytes in small_days:
        await owner.day(ids["idle"], days_ago, requests, gigabytes)
    # 60 days ago is outside every rolling window of the 30-day lookback (which reaches back 58 days).
    await owner.day(ids["idle"], 60, requests=90_000, storage_gb=20.0)
    await owner.crossing(ids["idle"], "products", crossed_ago=70, resolved_ago=50)
    await owner.moved_days_ago(ids["idle"], 45)

    await owner.tenant(ids["dedicated_enterprise"], plan="enterprise")
    await owner.tenant(ids["in_band"], product_count=6_000)
    await owner.moved_days_ago(ids["in_band"], 45)
    await owner.crossing(ids["recent_crossing"], "products", crossed_ago=20, resolved_ago=10)
    # 40 days ago: before the lookback's first day, but inside the 30-day window that ends on it.
    await owner.day(ids["old_peak"], 40, requests=60_000)
    await owner.moved_days_ago(ids["old_peak"], 45)


@pytest.fixture(scope="module")
async def seeded(stack_env: dict[str, str], make_tenant: MakeTenant) -> dict[str, uuid.UUID]:
    ids = {case.name: await make_tenant(case.now) for case in EXPECTED}
    connection = await asyncpg.connect(libpq_url(stack_env["OWNER_DATABASE_URL"]))
    try:
        await _seed(Owner(connection), ids)
    finally:
        await connection.close()
    return ids


def _expected_totals(cases: list[Case]) -> dict[str, Any]:
    n = len(cases)
    shared_now = sum(1 for c in cases if c.now == "shared")
    shared_after = sum(1 for c in cases if c.recommended == "shared")

    def cost(shared: int) -> float:
        return math.ceil(shared / CAPACITY) * INSTANCE + (n - shared) * DEDICATED

    all_dedicated = n * DEDICATED
    return {
        "tenants": n,
        "shared_now": shared_now,
        "dedicated_now": n - shared_now,
        "shared_after": shared_after,
        "dedicated_after": n - shared_after,
        "shared_instances_now": math.ceil(shared_now / CAPACITY),
        "shared_instances_after": math.ceil(shared_after / CAPACITY),
        "promotions": sum(1 for c in cases if (c.now, c.recommended) == ("shared", "dedicated")),
        "demotions": sum(1 for c in cases if (c.now, c.recommended) == ("dedicated", "shared")),
        "monthly_cost_now": cost(shared_now),
        "monthly_cost_after": cost(shared_after),
        "monthly_cost_all_dedicated": all_dedicated,
        "saving_vs_all_dedicated_percent_now": round((1 - cost(shared_now) / all_dedicated) * 100, 1),
        "saving_vs_all_dedicated_percent_after": round((1 - cost(shared_after) / all_dedicated) * 100, 1),
    }


@pytest.fixture(scope="module")
async def advisor(stack_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = migrator_settings(
        stack_env,
        migrator_runner_enabled=False,
        **{key.lower(): value for key, value in PLACEMENT_ENV.items()},
    )
    async with serve(create_app(settings)) as client:
        yield client


def _params(ids: dict[str, uuid.UUID]) -> list[tuple[str, str]]:
    return [("tenant_id", str(tenant_id)) for tenant_id in ids.values()]


async def test_the_plan_of_the_seeded_tenants_is_the_table(
    advisor: httpx.AsyncClient, seeded: dict[str, uuid.UUID]
) -> None:
    response = await advisor.get("/v1/placement/plan", params=_params(seeded))
    assert response.status_code == 200, response.text
    plan = response.json()
    by_id = {item["tenant_id"]: item for item in plan["items"]}
    found = [
        Case(name, by_id[str(t)]["placement_now"], by_id[str(t)]["recommended"], by_id[str(t)]["rule"])
        for name, t in seeded.items()
    ]
    assert found == EXPECTED, [item["reason"] for item in plan["items"]]
    assert plan["totals"] == _expected_totals(EXPECTED)

    item = {name: by_id[str(t)] for name, t in seeded.items()}
    assert item["compliance"]["rules_met"] == ["compliance_isolation", "products"]
    assert item["big_storage"]["storage_gb"] == 12.5
    assert item["idle"]["peak_requests_30d"] == 3_000
    assert item["idle"]["peak_storage_gb"] == 0.2
    assert item["idle"]["last_active_on"] == (datetime.now(UTC).date() - timedelta(days=45)).isoformat()
    assert "quiet for 10 of 30 days" in item["recent_crossing"]["reason"]
    assert "peak 30-day requests 60,000 not below 50,000" in item["old_peak"]["reason"]
    assert "products 6,000 not below 5,000" in item["in_band"]["reason"]
    # Costs: a shared tenant's share of the instances, a dedicated database with its overhead.
    shared_share_now = round(2 * INSTANCE / 7, 2)
    shared_share_after = round(1 * INSTANCE / 3, 2)
    assert (item["small"]["monthly_cost_now"], item["small"]["monthly_cost_after"]) == (
        shared_share_now,
        shared_share_after,
    )
    assert (item["at_products"]["monthly_cost_now"], item["at_products"]["monthly_cost_after"]) == (
        shared_share_now,
        DEDICATED,
    )
    assert (item["idle"]["monthly_cost_now"], item["idle"]["monthly_cost_after"]) == (
        DEDICATED,
        shared_share_after,
    )
    assert plan["model"]["shared_instance_capacity_tenants"] == CAPACITY
    assert plan["model"]["dedicated_overhead_monthly_cost"] == 5.0

    changes = await advisor.get("/v1/placement/plan", params=[*_params(seeded), ("only_changes", "true")])
    assert {i["tenant_id"] for i in changes.json()["items"]} == {
        str(seeded[c.name]) for c in EXPECTED if c.now != c.recommended
    }
    assert changes.json()["totals"] == plan["totals"]


async def test_the_fleet_plan_covers_every_tenant_and_bad_parameters_are_problems(
    advisor: httpx.AsyncClient, seeded: dict[str, uuid.UUID]
) -> None:
    fleet = (await advisor.get("/v1/placement/plan")).json()
    assert {str(t) for t in seeded.values()} <= {i["tenant_id"] for i in fleet["items"]}
    assert fleet["totals"]["tenants"] == len(fleet["items"])
    assert fleet["totals"]["shared_now"] + fleet["totals"]["dedicated_now"] == len(fleet["items"])

    for params in ([("tenant_id", "not-a-uuid")], [("only_changes", "maybe")]):
        bad = await advisor.get("/v1/placement/plan", params=params)
        assert bad.status_code == 422, bad.text
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["errors"][0]["field"] in {"tenant_id", "tenant_id.0", "only_changes"}
    too_many = [("tenant_id", str(uuid.uuid4())) for _ in range(501)]
    assert (await advisor.get("/v1/placement/plan", params=too_many)).status_code == 422
    unknown = (await advisor.get("/v1/placement/plan", params=[("tenant_id", str(uuid.uuid4()))])).json()
    assert unknown["items"] == []
    assert unknown["totals"]["tenants"] == 0


# tenantctl against migrator processes -------------------------------------------------------------


def _process_env(stack_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **stack_env,
        **PLACEMENT_ENV,
        "DEDICATED_PASSWORD_SECRET": dedicated_secret(),
        "LOG_LEVEL": "WARNING",
        "MIGRATOR_CLEANUP_DELAY_SECONDS": "0.5",
        "MIGRATOR_POLL_INTERVAL_SECONDS": "0.2",
        # Only the moves these tests ask for: no trigger event of another test's tenants.
        "PLACEMENT_AUTO_ENABLED": "false",
        **extra,
    }


def tenantctl(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantctl", *args],
        env={**os.environ, "MIGRATOR_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tenant_args(ids: list[uuid.UUID]) -> list[str]:
    return [arg for t in ids for arg in ("--tenant", str(t))]


async def test_tenantctl_apply_queues_exactly_the_recommended_moves(
    stack_env: dict[str, str], seeded: dict[str, uuid.UUID], tmp_path: Path
) -> None:
    # The runner is off: the moves stay pending, to be counted (and cancelled at the end).
    process = ServiceProcess(
        "migrator", _process_env(stack_env, MIGRATOR_RUNNER_ENABLED="false"), tmp_path / "migrator.log"
    )
    try:
        await process.wait_ready()
        args = _tenant_args(list(seeded.values()))
        human = tenantctl(process.url, "placement", "plan", *args)
        assert human.returncode == 0, human.stderr
        assert "shared → dedicated" in human.stdout
        assert "dedicated → shared" in human.stdout
        totals = _expected_totals(EXPECTED)
        assert f"monthly cost ${totals['monthly_cost_now']:,.2f} now" in human.stdout
        as_json = tenantctl(process.url, "placement", "plan", *args, "--json")
        assert json.loads(as_json.stdout)["totals"] == totals
        changes = json.loads(tenantctl(process.url, "placement", "plan", *args, "--changes", "--json").stdout)
        assert {(i["tenant_id"], i["action"]) for i in changes["items"]} == {
            (str(seeded[c.name]), "promote" if c.recommended == "dedicated" else "demote")
            for c in EXPECTED
            if c.now != c.recommended
        }

        async with httpx.AsyncClient(base_url=process.url) as client:
            # A tenant already moving: its 409 is reported, the other moves are still asked for.
            moving = seeded["at_requests"]
            first = await client.post("/v1/migrations", json={"tenant_id": str(moving), "reason": "on-call"})
            assert first.status_code == 202, first.text

            applied = tenantctl(process.url, "placement", "plan", *args, "--apply", "--json")
            assert applied.returncode == 0, applied.stderr
            outcomes = {o["tenant_id"]: o for o in json.loads(applied.stdout)["applied"]}
            moves = {str(seeded[c.name]): c for c in EXPECTED if c.now != c.recommended}
            assert set(outcomes) == set(moves)
            assert outcomes[str(moving)]["result"] == "already_moving"
            assert all(o["result"] == "queued" for t, o in outcomes.items() if t != str(moving))

            pending: dict[str, list[dict[str, Any]]] = {}
            for name, tenant_id in seeded.items():
                page = await client.get(
                    "/v1/migrations", params={"tenant_id": str(tenant_id), "status": "pending"}
                )
                pending[name] = page.json()["items"]
            for case in EXPECTED:
                found = pending[case.name]
                if case.now == case.recommended:
                    assert found == [], case
                    continue
                assert len(found) == 1, (case, found)
                expected_type = (
                    "shared_to_dedicated" if case.recommended == "dedicated" else "dedicated_to_shared"
                )
                assert found[0]["migration_type"] == expected_type
                if case.name != "at_requests":
                    assert found[0]["reason"].startswith("placement plan "), found[0]
                    assert f": {case.rule}: " in found[0]["reason"]
                    assert found[0]["id"] == outcomes[str(seeded[case.name])]["migration_id"]
            for found in pending.values():
                for migration in found:
                    cancelled = await client.post(f"/v1/migrations/{migration['id']}/cancel")
                    assert cancelled.json()["status"] == "cancelled"
    finally:
        process.stop()


async def test_a_downgraded_idle_dedicated_tenant_is_demoted_with_equal_checksums(
    stack_env: dict[str, str], make_tenant: MakeTenant, tmp_path: Path
) -> None:
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=30)
    before = await checksums(stack_env, tenant_id, "shared")
    owner = Owner(await asyncpg.connect(libpq_url(stack_env["OWNER_DATABASE_URL"])))
    process = ServiceProcess("migrator", _process_env(stack_env), tmp_path / "migrator.log")
    try:
        await process.wait_ready()
        async with httpx.AsyncClient(base_url=process.url) as client:
            # Enterprise: the plan promotes it, and --apply moves it.
            await owner.tenant(tenant_id, plan="enterprise", product_count=30)
            promoted = tenantctl(
                process.url, "placement", "plan", "--tenant", str(tenant_id), "--apply", "--json"
            )
            assert promoted.returncode == 0, promoted.stderr
            [up] = json.loads(promoted.stdout)["applied"]
            assert (up["direction"], up["result"]) == ("to_dedicated", "queued")
            assert (await wait_for(client, up["migration_id"], {"completed", "failed"}))[
                "status"
            ] == "completed"
            assert await checksums(stack_env, tenant_id, "dedicated") == before

            # Downgraded to basic: not yet quiet long enough (it arrived today).
            await owner.tenant(tenant_id, plan="basic")
            waiting = tenantctl(process.url, "placement", "plan", "--tenant", str(tenant_id), "--json")
            [item] = json.loads(waiting.stdout)["items"]
            assert (item["recommended"], item["rule"]) == ("dedicated", "recently_active"), item

            # ... and 31 days later, with small daily usage all along: demoted.
            await owner.moved_days_ago(tenant_id, 31)
            for days_ago in range(31):
                await owner.day(tenant_id, days_ago, requests=20, storage_gb=0.01)
            demoted = tenantctl(
                process.url, "placement", "plan", "--tenant", str(tenant_id), "--apply", "--json"
            )
            assert demoted.returncode == 0, demoted.stderr
            document = json.loads(demoted.stdout)
            assert document["items"][0]["rule"] == "idle", document["items"][0]
            [down] = document["applied"]
            assert (down["direction"], down["result"]) == ("to_shared", "queued")
            done = await wait_for(client, down["migration_id"], {"completed", "failed"})
            assert done["status"] == "completed", done
            assert done["migration_type"] == "dedicated_to_shared"
            assert done["reason"].startswith("placement plan ")
    finally:
        process.stop()
        await owner.connection.close()
    placed = await directory(stack_env, tenant_id)
    assert (placed["tenant_type"], placed["database_name"]) == ("shared", None)
    assert await checksums(stack_env, tenant_id, "shared") == before
