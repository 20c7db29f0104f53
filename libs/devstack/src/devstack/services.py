"""The platform's HTTP services as child processes of the stack (`python -m <module>`).

Each `ServiceSpec` in `SERVICES` is started by `up`/`run`, waited for (`GET /readyz` == 200),
stopped by `down` and listed by `status`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tenantschema import roles

from devstack import procs
from devstack.config import HOST, Config
from devstack.errors import DevstackError

log = logging.getLogger("devstack")

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# The contract's service URLs (CONTRACT.md §1): stack.env key -> default port.
SERVICE_PORTS: dict[str, int] = {
    "TENANCY_URL": 8101,
    "CATALOG_URL": 8102,
    "ORDERS_URL": 8103,
    "USAGE_URL": 8104,
    "MIGRATOR_URL": 8105,
}


@dataclass(frozen=True)
class ServiceSpec:
    """One service process: `python -m <module> [args]`, serving HTTP on `port`."""

    name: str
    module: str
    url_key: str
    args: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        """The contract's default port, or the one an environment override of its URL names."""
        override = os.environ.get(self.url_key, "").strip()
        if override:
            port = urlsplit(override).port
            if port is not None:
                return port
        return SERVICE_PORTS[self.url_key]


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("tenancy", "tenancy", "TENANCY_URL"),
    ServiceSpec("catalog", "catalog", "CATALOG_URL"),
    ServiceSpec("orders", "orders", "ORDERS_URL"),
    ServiceSpec("usage", "usage", "USAGE_URL"),
    ServiceSpec("migrator", "migrator", "MIGRATOR_URL"),
)


def service_urls() -> dict[str, str]:
    return {key: f"http://{HOST}:{port}" for key, port in SERVICE_PORTS.items()}  # overrides win later


def _pid_file(config: Config, name: str) -> Path:
    return config.services_dir / f"{name}.pid"


def _log_file(config: Config, name: str) -> Path:
    return config.services_dir / f"{name}.log"


def running(config: Config) -> dict[str, int]:
    """Services with a live process from their PID file (stale PID files are ignored)."""
    found: dict[str, int] = {}
    if not config.services_dir.is_dir():
        return found
    for pid_file in sorted(config.services_dir.glob("*.pid")):
        pid = procs.read_pid(pid_file)
        if pid is not None and procs.is_alive(pid) and "-m" in procs.cmdline(pid):
            found[pid_file.stem] = pid
    return found


def start(config: Config, env: Mapping[str, str], specs: Sequence[ServiceSpec] = SERVICES) -> list[str]:
    """Start the services that do not run yet, detached; returns the names started."""
    already = running(config)
    started: list[str] = []
    for spec in specs:
        if spec.name in already:
            continue
        procs.require_free_port(spec.port, what=f"service {spec.name}", env_var=spec.url_key)
    for spec in specs:
        if spec.name in already:
            continue
        config.services_dir.mkdir(parents=True, exist_ok=True)
        child_env = {
            **os.environ,
            **env,
            **database_env(spec.name, env),
            **spec.extra_env,
            "HOST": HOST,
            "PORT": str(spec.port),
        }
        with _log_file(config, spec.name).open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", spec.module, *spec.args],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN.append(process)
        procs.write_pid(_pid_file(config, spec.name), process.pid)
        log.info("started service %s (pid %d) on port %d", spec.name, process.pid, spec.port)
        started.append(spec.name)
    return started


_CHILDREN: list[subprocess.Popen[bytes]] = []


def database_env(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """PLATFORM_DATABASE_URL / SHARED_DATABASE_URL of a service: its own role's (stack.env's
    `<SERVICE>_PLATFORM_DATABASE_URL`, ...), so each process logs in as itself."""
    try:
        prefix = roles.role_for(service).env_prefix
    except KeyError:
        return {}
    found: dict[str, str] = {}
    for key in ("PLATFORM_DATABASE_URL", "SHARED_DATABASE_URL"):
        if env.get(prefix + key):
            found[key] = env[prefix + key]
    return found


async def wait_ready(
    config: Config, specs: Sequence[ServiceSpec] = SERVICES, *, within: float = READY_TIMEOUT
) -> None:
    """Wait until every service answers 200 on GET /readyz."""
    if not specs:
        return
    import httpx

    deadline = time.monotonic() + within
    pending = {spec.name: spec for spec in specs}
    async with httpx.AsyncClient(timeout=2.0) as client:
        while pending:
            pids = running(config)
            for name in list(pending):
                if name not in pids:
                    raise DevstackError(
                        f"service {name} exited during start-up", procs.log_details(_log_file(config, name))
                    )
                try:
                    response = await client.get(f"http://{HOST}:{pending[name].port}/readyz")
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(sorted(pending))
                raise DevstackError(
                    f"services not ready within {within:.0f} s: {names}",
                    procs.log_details(*(_log_file(config, name) for name in pending)),
                )
            await asyncio.sleep(0.25)


def stop(config: Config, names: Sequence[str] | None = None) -> list[str]:
    """Stop the services that have a PID file (all, or those in `names`); returns the names stopped."""
    stopped: list[str] = []
    if not config.services_dir.is_dir():
        return stopped
    alive = running(config)
    for pid_file in sorted(config.services_dir.glob("*.pid")):
        name = pid_file.stem
        if names is not None and name not in names:
            continue
        if name in alive:
            log.info("stopping service %s (pid %d)", name, alive[name])
            procs.terminate(alive[name], name=f"service {name}", timeout=STOP_TIMEOUT)
            stopped.append(name)
        pid_file.unlink(missing_ok=True)
    return stopped
