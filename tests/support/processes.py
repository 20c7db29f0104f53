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
        child_env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
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
        "PLATFORM_DATABASE_URL": stack_env["PLATFORM_DATABASE_URL"],
        "SHARED_DATABASE_URL": stack_env["SHARED_DATABASE_URL"],
        # Or its `up` would give the relay's role a password of its own, locking the session's relays out.
        "RELAY_PLATFORM_DATABASE_URL": stack_env["RELAY_PLATFORM_DATABASE_URL"],
        "RELAY_SHARED_DATABASE_URL": stack_env["RELAY_SHARED_DATABASE_URL"],
    }
    if (main_libs / "kafka-clients-4.1.1.jar").exists() or any(main_libs.glob("kafka_2.13-*.jar")):
        env["DEVSTACK_KAFKA_LIBS"] = str(main_libs.resolve())
    devstack("up", env)
    try:
        yield env
    finally:
        devstack("down", env)
