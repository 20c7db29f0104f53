"""Service processes and an isolated Kafka for tests that kill or stop things."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from devstack.services import database_env
from devstack.stack import parse_env_file


def free_port() -> int:
    """A free port below the ephemeral range: a server restarted on it later cannot find it taken
    by some client's outgoing connection (the kernel hands those out from the ephemeral range)."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 30000")


class ServiceProcess:
    def __init__(self, module: str, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in stop)
        # As the service's own role when `env` is stack.env (devstack starts its services the same way).
        own_role = database_env(module, env)
        child_env = {**os.environ, **env, **own_role, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", module], env=child_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"service exited with {self.process.returncode}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("service never became ready")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush — as a crash would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def devstack(command: str, env: Mapping[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack", command], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, f"devstack {command} failed:\n{done.stdout}\n{done.stderr}"


@contextmanager
def isolated_kafka(stack_env: Mapping[str, str], state_dir: Path) -> Iterator[dict[str, str]]:
    """A second Kafka of our own (the session stack's PostgreSQL is reused, not restarted).

    Yields the environment that `devstack up`/`down` take to start and stop exactly this Kafka.
    """
    main_libs = Path(os.environ.get("DEVSTACK_DIR", ".devstack")) / "kafka" / "libs"
    env = {
        "DEVSTACK_DIR": str(state_dir),
        "DEVSTACK_KAFKA_PORT": str(free_port()),
        "DEVSTACK_KAFKA_CONTROLLER_PORT": str(free_port()),
        "DEVSTACK_SKIP_MIGRATIONS": "1",
        "DEVSTACK_SERVICES": "none",
        "ADMIN_DATABASE_URL": stack_env["ADMIN_DATABASE_URL"],
        "OWNER_DATABASE_URL": stack_env["OWNER_DATABASE_URL"],
        # Every login URL, the services' own roles' too: left out, devstack would derive them from
        # this folder's fresh credentials and reset the session stack's role passwords.
        **{key: value for key, value in stack_env.items() if key.endswith("_DATABASE_URL")},
    }
    if (main_libs / "kafka-clients-4.1.1.jar").exists() or any(main_libs.glob("kafka_2.13-*.jar")):
        env["DEVSTACK_KAFKA_LIBS"] = str(main_libs.resolve())
    devstack("up", env)
    try:
        yield env
    finally:
        devstack("down", env)


# Variables of the session's stack that must not leak into an isolated one (they would make devstack
# use the session's servers instead of starting its own).
_STACK_VARIABLES = (
    "ADMIN_DATABASE_URL",
    "OWNER_DATABASE_URL",
    "PLATFORM_DATABASE_URL",
    "SHARED_DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "DEDICATED_PASSWORD_SECRET",
)


class IsolatedStack:
    """A PostgreSQL and a Kafka of a test's own (`devstack up` in a private folder, free ports), for
    tests that stop servers: the session's stack and the apps other tests built never notice.
    `stop_postgres`, `stop_kafka` and `start_again` go through devstack's own code; data survives a
    stop (same folder, same credentials)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.kafka_port = free_port()
        self.base = {
            "DEVSTACK_DIR": str(state_dir),
            "DEVSTACK_PG_PORT": str(free_port()),
            "DEVSTACK_KAFKA_PORT": str(self.kafka_port),
            "DEVSTACK_KAFKA_CONTROLLER_PORT": str(free_port()),
            "DEVSTACK_SERVICES": "none",
        }
        main_libs = Path(os.environ.get("DEVSTACK_DIR", ".devstack")) / "kafka" / "libs"
        if main_libs.is_dir() and "DEVSTACK_KAFKA_LIBS" not in os.environ:
            self.base["DEVSTACK_KAFKA_LIBS"] = str(main_libs.resolve())
        self.env: dict[str, str] = {}  # its stack.env, once up

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def _devstack(self, command: str, **extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _STACK_VARIABLES}
        done = subprocess.run(
            [sys.executable, "-m", "devstack", command],
            env={**env, **self.base, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"devstack {command} failed:\n{done.stdout}\n{done.stderr}"

    def up(self) -> None:
        self._devstack("up")
        self.env = parse_env_file(self.state_dir / "stack.env")

    def down(self) -> None:
        self._devstack("down")

    def _stop(self, server: str) -> None:
        """devstack's own stop of one server of this stack (PostgreSQL: pg_ctl fast shutdown;
        Kafka: SIGTERM, as an orchestrator would)."""
        module, cls = {"postgres": ("postgres", "LocalPostgres"), "kafka": ("kafka", "LocalKafka")}[server]
        script = (
            f"from devstack.config import load_config; from devstack.{module} import {cls}; "
            f"assert {cls}(load_config()).stop()"
        )
        env = {k: v for k, v in os.environ.items() if k not in _STACK_VARIABLES}
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**env, **self.base},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"stopping {server} failed:\n{done.stdout}\n{done.stderr}"

    def stop_postgres(self) -> None:
        self._stop("postgres")

    def stop_kafka(self) -> None:
        self._stop("kafka")

    def start_again(self) -> None:
        """`devstack up`: starts what is stopped, waits until it answers (Kafka: topics in place)."""
        self._devstack("up")


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedStack]:
    """A stack of the test module's own (IsolatedStack), up for the module, down after it."""
    stack = IsolatedStack(tmp_path_factory.mktemp("isolated"))
    stack.up()
    try:
        yield stack
    finally:
        stack.down()
