"""`tenantctl migrate/migrations/tenants` against running tenancy and migrator processes: --wait
follows a move to its end (exit 0), --json is one document, refusals exit 1 with the problem's
detail on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.migrator.conftest import directory, seed_shared
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
async def urls(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("tenantctl")
    env = {
        **stack_env,
        "DEDICATED_PASSWORD_SECRET": dedicated_secret(),
        "LOG_LEVEL": "WARNING",
        "MIGRATOR_CLEANUP_DELAY_SECONDS": "0.5",
        "MIGRATOR_POLL_INTERVAL_SECONDS": "0.2",
        "PLACEMENT_AUTO_ENABLED": "false",
    }
    processes = [ServiceProcess(name, env, logs / f"{name}.log") for name in ("tenancy", "migrator")]
    try:
        for process in processes:
            await process.wait_ready()
        yield {"TENANCY_URL": processes[0].url, "MIGRATOR_URL": processes[1].url}
    finally:
        for process in processes:
            process.stop()


def tenantctl(urls: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantctl", *args],
        env={**os.environ, **urls},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_migrate_waits_for_the_move_and_the_other_commands_see_it(
    stack_env: dict[str, str], make_tenant: MakeTenant, urls: dict[str, str], tmp_path: Path
) -> None:
    tenant_id = await make_tenant("shared")
    await seed_shared(stack_env, tenant_id, products=12)
    done = tenantctl(urls, "migrate", str(tenant_id), "--to", "dedicated", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    migration = json.loads(done.stdout)
    assert migration["status"] == "completed"
    assert migration["summary"]["rows_copied"] >= 12
    assert migration["summary"]["percent"] == 100.0
    assert (await directory(stack_env, tenant_id))["tenant_type"] == "dedicated"

    shown = tenantctl(urls, "migrations", "show", migration["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == migration["id"]
    listed = tenantctl(urls, "migrations", "list", "--tenant", str(tenant_id), "--json")
    assert [m["id"] for m in json.loads(listed.stdout)["items"]] == [migration["id"]]
    human = tenantctl(urls, "migrations", "list", "--tenant", str(tenant_id))
    assert "completed/done" in human.stdout

    # Past its cutover a move cannot be cancelled: 409, exit 1, the detail on stderr.
    refused = tenantctl(urls, "migrations", "cancel", migration["id"])
    assert refused.returncode == 1
    assert "409" in refused.stderr
    unknown = tenantctl(urls, "migrate", str(uuid.uuid4()))
    assert unknown.returncode == 1
    assert "404" in unknown.stderr

    tenants = tenantctl(urls, "tenants", "list", "--type", "dedicated", "--json")
    assert tenants.returncode == 0, tenants.stderr
    assert str(tenant_id) in {t["id"] for t in json.loads(tenants.stdout)["items"]}
