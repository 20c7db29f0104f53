"""`make run`'s live demo, end to end: `python -m devstack run` (what `make run` runs) on a stack of
the test's own (PostgreSQL, Kafka and the five services on free ports, state in a temporary folder)
plays the short scenario. Then, checked apart from the demo's own report while the services still
run: zero failed requests, the pushed tenant dedicated (tenancy's directory and catalog serving it),
usage counted its products; then Ctrl-C stops everything and the exit code is the demo's verdict.

Passes only with the migrator's automatic placement (issue 11's triggers): the demo never asks for a
move, so without it the pushed tenant stays shared and this test fails at that check.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import devstack
import httpx
import pytest
from devstack.kafka import libs_complete

from tests.support.processes import free_port

SERVICE_URL_KEYS = ("TENANCY_URL", "CATALOG_URL", "ORDERS_URL", "USAGE_URL", "MIGRATOR_URL")
# Bounds (the watchdog gives the test 300 s): a cold stack ~40 s, the scenario ~60-90 s with the
# automatic moves; each move is waited for at most DEMO_MOVE_TIMEOUT_SECONDS.
DEMO_DONE_WITHIN = 230.0
MOVE_TIMEOUT = "90"
STOP_WITHIN = 45.0
DONE_LINE = "demo: done; the services keep running"


@dataclass
class Run:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, text: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None:
                raise AssertionError(f"devstack run exited ({self.process.returncode}) before {text!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {within:.0f} s")
            time.sleep(0.25)


@pytest.fixture
def own_stack() -> Iterator[tuple[Path, dict[str, str]]]:
    state = Path(tempfile.mkdtemp(prefix="devstack-demo-"))
    state.chmod(0o755)  # PostgreSQL runs as the postgres user when the tests run as root
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in devstack.STACK_KEYS
        and key
        not in {"TESTCONTAINERS", "DEVSTACK_KAFKA_LIBS", "DEVSTACK_SERVICES", "DEVSTACK_SKIP_MIGRATIONS"}
        and not key.startswith("DEMO")
    }
    env.update(
        DEVSTACK_DIR=str(state),
        DEVSTACK_PG_PORT=str(free_port()),
        DEVSTACK_KAFKA_PORT=str(free_port()),
        DEVSTACK_KAFKA_CONTROLLER_PORT=str(free_port()),
        **{key: f"http://127.0.0.1:{free_port()}" for key in SERVICE_URL_KEYS},
        DEMO="short",
        DEMO_SUMMARY_FILE=str(state / "demo-summary.json"),
        DEMO_MOVE_TIMEOUT_SECONDS=MOVE_TIMEOUT,
        LOG_LEVEL="WARNING",
    )
    config = devstack.load_config()
    if libs_complete(config.kafka_libs, config.kafka_pom):
        env["DEVSTACK_KAFKA_LIBS"] = str(config.kafka_libs)  # no second download
    try:
        yield state, env
    finally:
        # Whatever happened, nothing of this stack is left running (down stops by PID files only).
        with contextlib.suppress(Exception):
            subprocess.run(
                [sys.executable, "-m", "devstack", "down"],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
                check=False,
            )
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.slow
def test_make_run_plays_the_short_demo_with_no_failed_request_and_the_pushed_tenant_dedicated(
    own_stack: tuple[Path, dict[str, str]],
) -> None:
    state, env = own_stack
    with (state / "devstack-run.stderr").open("w") as stderr:
        run = Run(
            subprocess.Popen(
                [sys.executable, "-m", "devstack", "run"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        )
        reader = threading.Thread(target=run.read, daemon=True)
        reader.start()
        try:
            try:
                run.wait_for_line(DONE_LINE, DEMO_DONE_WITHIN)
            except AssertionError as error:
                tail = "\n".join(run.lines[-60:])
                errors = (state / "devstack-run.stderr").read_text()[-3000:]
                raise AssertionError(f"{error}\n--- stdout (tail):\n{tail}\n--- stderr:\n{errors}") from None
            summary = json.loads((state / "demo-summary.json").read_text())
            printed = "\n".join(run.lines)
            assert "== demo summary (short scenario" in printed
            assert summary["failed"] == 0, summary["failure_details"]
            assert summary["by_kind"]["read"] > 50, summary["by_kind"]  # traffic really ran
            assert summary["by_kind"]["order"] > 20, summary["by_kind"]
            pushed = next(t for t in summary["tenants"] if t["key"] == "pushed")

            # Apart from the demo's report: the services, still running, say the same.
            with httpx.Client(timeout=10) as client:
                tenant = client.get(f"{env['TENANCY_URL']}/v1/tenants/{pushed['tenant_id']}").json()
                assert tenant["tenant_type"] == "dedicated", (tenant, printed[-4000:])
                assert tenant["database_name"] == "tenant_" + pushed["tenant_id"].replace("-", "")
                page = client.get(
                    f"{env['CATALOG_URL']}/v1/products",
                    params={"limit": 1},
                    headers={"X-Tenant-ID": pushed["tenant_id"]},
                )
                assert page.status_code == 200, page.text
                usage = client.get(f"{env['USAGE_URL']}/v1/usage/{pushed['tenant_id']}").json()
                assert usage["product_count"] >= 10_000
            assert summary["pushed_dedicated"] is True
            assert summary["ok"] is True
        finally:
            if run.process.poll() is None:
                run.process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                code = run.process.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                run.process.kill()
                raise
            reader.join(5)
    assert code == 0, "\n".join(run.lines[-40:])
    assert not (state / "stack.env").exists()  # run's down removed it: everything stopped
    summary_start = max(i for i, line in enumerate(run.lines) if line.startswith("== demo summary"))
    print("\n".join(run.lines[summary_start:]))  # what the demo printed (pytest -s shows it)
