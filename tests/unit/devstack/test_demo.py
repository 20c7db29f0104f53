"""The live demo's driver without servers: counting, the summary, the missing-endpoint path, the
scenario end to end against an in-memory platform, and `devstack run`'s companion thread."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack import stack
from devstack.demo import exit_code, play
from devstack.demo.client import Missing, PlatformClient
from devstack.demo.display import Board, PlainDisplay
from devstack.demo.load import LoadGenerator, TrafficTarget
from devstack.demo.report import AdvisorView, MoveRow, Summary, TenantRow, advisor_view, render_text, table
from devstack.demo.scenario import Demo, describe_progress
from devstack.demo.settings import SHORT, load_scenario
from devstack.demo.tally import Tally, percentile
from devstack.errors import DevstackError

from tests.unit.devstack.fake_platform import URLS, FakePlatform

# The short scenario with its pauses squeezed (the fake answers at once).
FAST = replace(
    SHORT,
    steady_before_push=0.3,
    steady_after_moves=0.3,
    usage_settle=0.0,
    move_timeout=5.0,
    poll_interval=0.01,
    read_model_timeout=5.0,
)


def plain(board: Board) -> PlainDisplay:
    return PlainDisplay(board, io.StringIO())


# ------------------------------------------------------------------ settings


def test_the_environment_chooses_the_scenario() -> None:
    assert load_scenario({}).mode == "full"
    assert not load_scenario({"DEMO": "0"}).enabled
    short = load_scenario({"DEMO": "short", "DEMO_EXIT": "1", "DEMO_SUMMARY_FILE": "/tmp/x.json"})
    assert (short.mode, short.strict, short.exit_after_summary, short.summary_file) == (
        "short",
        True,
        True,
        "/tmp/x.json",
    )
    assert not load_scenario({"DEMO": "1"}).strict
    assert load_scenario({"DEMO": "short", "DEMO_MOVE_TIMEOUT_SECONDS": "7"}).move_timeout == 7.0
    with pytest.raises(DevstackError, match="DEMO='sometimes'"):
        load_scenario({"DEMO": "sometimes"})
    with pytest.raises(DevstackError, match="DEMO_MOVE_TIMEOUT_SECONDS"):
        load_scenario({"DEMO_MOVE_TIMEOUT_SECONDS": "soon"})


# ------------------------------------------------------------------ counting


def test_the_tally_counts_every_outcome_and_finds_the_slowest_request_in_a_window() -> None:
    tally = Tally()
    tally.record(tenant="a", kind="read", started_at=100.0, seconds=0.010, outcome="200", ok=True)
    tally.record(tenant="a", kind="order", started_at=100.5, seconds=0.900, outcome="201", ok=True)
    tally.record(tenant="a", kind="order", started_at=102.0, seconds=0.050, outcome="503", ok=False)
    tally.record(tenant="b", kind="read", started_at=100.6, seconds=2.000, outcome="ReadTimeout", ok=False)
    assert (tally.sent, tally.failed) == (4, 2)
    assert tally.by_kind() == {"read": 2, "order": 2}
    assert tally.failures_by_outcome() == {"503": 1, "ReadTimeout": 1}
    assert tally.tenant_counts("a") == (3, 1)
    # In flight during [101.0, 101.2]: only a's order that started at 100.5 and took 0.9 s.
    slowest = tally.longest_in_window("a", 101.0, 101.2)
    assert slowest is not None
    assert slowest.seconds == 0.900
    assert tally.longest_in_window("a", 103.0, 104.0) is None
    assert len(tally.failure_details) == 2


def test_percentile_is_a_measured_value() -> None:
    assert percentile([], 0.99) is None
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert percentile([1.0, 2.0], 1.0) == 2.0


async def test_the_client_counts_errors_by_status_and_by_exception() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/products/boom":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/v1/products/busy":
            return httpx.Response(503, json={"detail": "pool timeout"})
        return httpx.Response(200, json={"id": "x"})

    tally = Tally()
    async with PlatformClient(URLS, tally, timeout=1, transport=httpx.MockTransport(handler)) as client:
        assert (await client.read_product("a", "t", "ok")).ok
        busy = await client.read_product("a", "t", "busy")
        boom = await client.read_product("a", "t", "boom")
    assert (busy.ok, busy.status, busy.describe()) == (False, 503, "HTTP 503: pool timeout")
    assert (boom.ok, boom.status) == (False, None)
    assert tally.failures_by_outcome() == {"503": 1, "ConnectError": 1}
    assert tally.sent == 3


async def test_a_missing_advisor_is_one_line_and_no_failure() -> None:
    platform = FakePlatform(plan_status=404)
    tally = Tally()
    async with PlatformClient(URLS, tally, timeout=1, transport=platform.transport()) as client:
        plan = await client.placement_plan()
    assert isinstance(plan, Missing)
    assert tally.failed == 0
    assert tally.sent == 1
    view = advisor_view(plan, {})
    assert view.missing == "advisor (GET /v1/placement/plan): not served by this build (HTTP 404)"


async def test_the_load_generator_counts_every_request_it_sends() -> None:
    platform = FakePlatform(fail_orders_every=4, read_model_lag=0)
    tally = Tally()
    async with PlatformClient(URLS, tally, timeout=1, transport=platform.transport()) as client:
        load = LoadGenerator(client, reads_per_second=40, orders_per_second=40)
        load.targets = [TrafficTarget("a", "t-a", ["p1", "p2"], "x@example.com")]
        load.start()
        await asyncio.sleep(0.5)
        await load.stop()
    # Every request the fake received is in the tally, and each refused one is a failure.
    assert tally.sent == platform.received["catalog"] + platform.received["orders"]
    assert tally.by_kind()["order"] == platform.orders_seen
    assert tally.failed == platform.orders_seen // 4 > 0
    assert tally.failures_by_outcome() == {"503": platform.orders_seen // 4}
    rate = load.achieved_rate()
    assert rate is not None
    assert 20 < rate <= 85


# ------------------------------------------------------------------ the summary


def _summary(**overrides: Any) -> Summary:
    values: dict[str, Any] = {
        "mode": "short",
        "seconds": 61.2,
        "sent": 1523,
        "failed": 0,
        "by_kind": {"read": 1000, "order": 400, "bulk": 13, "control": 110},
        "failures_by_outcome": {},
        "failure_details": [],
        "traffic_rate": 20.8,
        "target_rate": 21.0,
        "tenants": [
            TenantRow(
                "pushed",
                "Acme Outdoor",
                "acme-1",
                "id-1",
                "basic",
                "dedicated",
                "tenant_ab",
                500,
                0,
                500,
                10010,
                98,
                ["products"],
            ),
            TenantRow("bystander", "Initech Books", "initech-1", "id-3", "basic", "shared", None, 480, 0),
        ],
        "moves": [
            MoveRow(
                "Acme Outdoor",
                "pushed past the products trigger",
                "m-1",
                "to_dedicated",
                "in_progress",
                "cleanup",
                "products >= 10000",
                "dedicated",
                87.0,
                212.4,
                9.6,
            ),
        ],
        "advisor": AdvisorView(
            missing="advisor (GET /v1/placement/plan): not served by this build (HTTP 404)"
        ),
        "pushed": "Acme Outdoor",
        "pushed_dedicated": True,
    }
    return Summary(**(values | overrides))


def test_the_summary_states_what_was_sent_what_failed_and_where_tenants_live() -> None:
    lines = render_text(_summary())
    text = "\n".join(lines)
    assert lines[0] == "== demo summary (short scenario, 61 s) =="
    assert "requests sent    1,523 (bulk 13, control 110, order 400, read 1,000)" in lines
    assert "failed requests  0" in lines
    assert "87 ms" in text
    assert "212 ms" in text
    assert "9.6 s" in text
    assert "products >= 10000" in text
    assert any(line.split()[:4] == ["Acme", "Outdoor", "basic", "dedicated"] for line in lines)
    # The missing advisor: exactly one line says so.
    assert [line for line in lines if "placement/plan" in line] == [
        "advisor          advisor (GET /v1/placement/plan): not served by this build (HTTP 404)"
    ]
    assert lines[-1] == "result: OK (0 failed requests; Acme Outdoor dedicated)"


def test_the_summary_fails_on_a_failed_request_or_a_tenant_left_shared() -> None:
    failed = _summary(
        failed=2, failures_by_outcome={"503": 2}, failure_details=["order POST /v1/orders: 503"]
    )
    lines = render_text(failed)
    assert "failed requests  2 (503 x2)" in lines
    assert "  order POST /v1/orders: 503" in lines
    assert not failed.ok
    assert lines[-1].startswith("result: FAILED")
    stayed = _summary(pushed_dedicated=False)
    assert not stayed.ok
    assert render_text(stayed)[-1] == "result: FAILED (0 failed requests; Acme Outdoor NOT dedicated)"
    assert exit_code(SHORT, stayed) == 1
    assert exit_code(replace(SHORT, mode="full"), stayed) == 0  # the full demo never fails make run
    assert stayed.to_json()["ok"] is False


def test_the_advisor_table_reads_the_plan_loosely_and_keeps_the_totals() -> None:
    plan = {
        "items": [
            {
                "tenant_id": "id-2",
                "placement": "dedicated",
                "recommended": "shared",
                "reasons": ["plan basic", "below every threshold"],
                "monthly_cost_now": 120.0,
                "monthly_cost_after": 2.5,
            },
            {"tenant_id": "someone-else", "placement": "shared", "recommended": "shared"},
        ],
        "totals": {"monthly_cost_now": 245.0, "monthly_cost_all_dedicated": 4800},
    }
    view = advisor_view(plan, {"id-2": "Globex Supplies"})
    assert [(r.tenant, r.now, r.recommended, r.reason, r.cost_now, r.cost_after) for r in view.rows] == [
        ("Globex Supplies", "dedicated", "shared", "plan basic; below every threshold", "120.00", "2.50")
    ]
    assert view.other_tenants == 1
    assert view.totals == {"monthly_cost_now": "245.00", "monthly_cost_all_dedicated": "4,800"}
    text = "\n".join(render_text(_summary(advisor=view)))
    assert "Globex Supplies" in text
    assert "monthly_cost_all_dedicated 4,800" in text
    assert advisor_view(["not", "a", "plan"], {}).error is not None
    nested = {
        "tenants": [
            {
                "tenant_id": "id-2",
                "current": {"placement": "dedicated", "monthly_cost": "120.00"},
                "recommended": {"placement": "shared", "monthly_cost": "2.50"},
                "reason": "demote",
            }
        ]
    }
    (row,) = advisor_view(nested, {"id-2": "Globex Supplies"}).rows
    assert (row.now, row.recommended, row.cost_now, row.cost_after) == (
        "dedicated",
        "shared",
        "120.00",
        "2.50",
    )


def test_tables_align_their_columns() -> None:
    lines = table(["name", "count"], [["a", "1"], ["longer", "1,234"]])
    assert lines == ["  name    count", "  ------  -----", "  a           1", "  longer  1,234"]


def test_a_migration_is_described_by_its_phase_and_recorded_progress() -> None:
    copying = {
        "status": "in_progress",
        "phase": "copy",
        "progress": {
            "tables": {"products": {"rows": 4000, "total": 10010}, "orders": {"rows": 0, "total": 98}}
        },
    }
    assert describe_progress(copying) == "in_progress/copy 4,000/10,108 rows"
    flipped = {"status": "in_progress", "phase": "cleanup", "progress": {"freeze_ms": 87.4}}
    assert describe_progress(flipped) == "in_progress/cleanup, freeze 87 ms"


# ------------------------------------------------------------------ the scenario, against a fake


async def test_the_scenario_against_a_platform_that_moves_tenants_by_itself(tmp_path: Path) -> None:
    platform = FakePlatform(automatic=True, plan_status=200)
    summary = await Demo(URLS, FAST, plain, transport=platform.transport()).run()
    assert summary.ok, render_text(summary)
    assert summary.failed == 0
    assert summary.pushed_dedicated
    pushed, upgraded, bystander = summary.tenants
    assert (pushed.tenant_type, upgraded.tenant_type, bystander.tenant_type) == (
        "dedicated",
        "dedicated",
        "shared",
    )
    assert upgraded.plan == "basic"  # upgraded, moved, then downgraded
    assert pushed.usage_products == 10_000 + FAST.warm_up_products
    assert [m.reason for m in summary.moves] == ["products >= 10000", "plan enterprise"]
    assert all(m.freeze_ms == 42.0 and m.seconds_to_flip is not None for m in summary.moves)
    # The demo never asked the migrator for a move: only reads of its migrations and plan.
    assert platform.received["migrator"] > 0
    assert [r.tenant for r in summary.advisor.rows] == ["Acme Outdoor", "Globex Supplies", "Initech Books"]
    assert summary.advisor.rows[1].recommended == "shared"
    assert summary.advisor.other_tenants == 1
    assert summary.by_kind["bulk"] == 3 + 10  # the seeds, then 10 x 1,000
    assert summary.sent == sum(platform.received.values())  # every request sent is counted


async def test_the_scenario_without_automatic_placement_fails_in_bounded_time() -> None:
    platform = FakePlatform(automatic=False, plan_status=404)
    started = time.monotonic()
    summary = await Demo(URLS, replace(FAST, move_timeout=0.5), plain, transport=platform.transport()).run()
    assert time.monotonic() - started < 10
    assert not summary.ok
    assert summary.failed == 0
    assert not summary.pushed_dedicated
    assert exit_code(SHORT, summary) == 1
    assert [m.status for m in summary.moves] == ["not started", "not started"]
    assert any("no migration was started" in w for w in summary.warnings)
    assert summary.advisor.missing is not None


async def test_play_prints_the_summary_and_writes_it_as_json(tmp_path: Path) -> None:
    out = io.StringIO()
    target = tmp_path / "summary.json"
    platform = FakePlatform()
    scenario = replace(FAST, summary_file=str(target))

    # play() builds its own clients: route them to the fake through httpx's transport mounting.
    original = httpx.AsyncClient.__init__

    def patched(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        kwargs["transport"] = platform.transport()
        original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx.AsyncClient, "__init__", patched)
        summary = await play(URLS, scenario, display_factory=lambda board: PlainDisplay(board, out))
    printed = out.getvalue()
    assert "== demo summary (short scenario" in printed
    assert "result: OK" in printed
    import json

    written = json.loads(target.read_text())
    assert written["ok"] is True
    assert written["sent"] == summary.sent
    assert written["tenants"][0]["tenant_type"] == "dedicated"


# ------------------------------------------------------------------ devstack run and its companion


class _FakeResult:
    env: dict[str, str] = {}
    local: list[str] = []

    def summary(self) -> list[str]:
        return []


def _fake_stack(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(stack, "up", lambda config, allow_containers: _FakeResult())
    monkeypatch.setattr(stack, "_dead_components", lambda config, result: [])
    monkeypatch.setattr(stack, "down", lambda config: calls.append("down") or [])
    return calls


def test_run_stops_with_the_companions_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_stack(monkeypatch)
    code = stack.run(object(), check_interval=0.05, companion=lambda result, stopping: 3)  # type: ignore[arg-type]
    assert code == 3
    assert calls == ["down"]


def test_ctrl_c_stops_the_companion_and_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_stack(monkeypatch)
    seen: list[bool] = []

    def companion(result: object, stopping: threading.Event) -> int | None:
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; run's handler turns it into a stop
        seen.append(stopping.wait(10))
        return None

    code = stack.run(object(), check_interval=0.05, companion=companion)  # type: ignore[arg-type]
    assert code == 0
    assert seen == [True]
    assert calls == ["down"]


def test_the_live_board_renders_each_tenant_with_its_placement_and_move() -> None:
    from devstack.demo.display import BoardTenant, LiveDisplay
    from rich.console import Console

    tally = Tally()
    tally.record(tenant="pushed", kind="read", started_at=time.time(), seconds=0.012, outcome="200", ok=True)
    tally.record(tenant="pushed", kind="order", started_at=time.time(), seconds=0.3, outcome="503", ok=False)
    board = Board(tally, step="waiting for the automatic moves")
    board.tenants["pushed"] = BoardTenant(
        "Acme Outdoor", "basic", "shared", "in_progress/copy 4,000/10,108 rows"
    )
    board.tenants["bystander"] = BoardTenant("Initech [Books]", "basic", "dedicated")
    display = LiveDisplay(board)
    try:
        display.event("a [bracketed] event is printed as it is")
        out = io.StringIO()
        Console(file=out, width=140, color_system=None).print(display._render())
    finally:
        display.close()
    text = out.getvalue()
    assert "waiting for the automatic moves" in text
    assert "2 requests" in text
    assert "1 failed" in text
    assert "in_progress/copy 4,000/10,108 rows" in text
    assert "Initech [Books]" in text
    assert "300 ms" in text  # the p99 of the last 10 s


def test_run_watches_only_the_services_it_started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from devstack.config import load_config

    monkeypatch.setenv("DEVSTACK_DIR", str(tmp_path))
    config = load_config()
    monkeypatch.setenv("DEVSTACK_SERVICES", "none")
    assert stack._dead_components(config, _FakeResult()) == []  # type: ignore[arg-type]
    monkeypatch.setenv("DEVSTACK_SERVICES", "tenancy")
    assert stack._dead_components(config, _FakeResult()) == ["service tenancy"]  # type: ignore[arg-type]
