"""Where the stack lives and which ports it uses (all overridable by environment variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import DevstackError

PG_PORT_ENV = "DEVSTACK_PG_PORT"
KAFKA_PORT_ENV = "DEVSTACK_KAFKA_PORT"
KAFKA_CONTROLLER_PORT_ENV = "DEVSTACK_KAFKA_CONTROLLER_PORT"
STATE_DIR_ENV = "DEVSTACK_DIR"
KAFKA_LIBS_ENV = "DEVSTACK_KAFKA_LIBS"
PG_BIN_ENV = "PG_BIN"
SKIP_MIGRATIONS_ENV = "DEVSTACK_SKIP_MIGRATIONS"
TESTCONTAINERS_ENV = "TESTCONTAINERS"

DEFAULT_PG_PORT = 54329
DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093

HOST = "127.0.0.1"
KAFKA_POM = Path("deploy") / "local" / "kafka" / "pom.xml"


def _is_root_marker(path: Path) -> bool:
    return (path / KAFKA_POM).is_file() or ((path / "Makefile").is_file() and (path / ".git").exists())


def _walk_up(start: Path) -> Path | None:
    for candidate in (start, *start.parents):
        if _is_root_marker(candidate):
            return candidate
    return None


def find_repo_root() -> Path:
    """The repository root: found from this package's location first, then from the working directory."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        found = _walk_up(start)
        if found is not None:
            return found
    raise DevstackError(
        "cannot find the repository root (a folder holding deploy/local/kafka/pom.xml, "
        "or Makefile and .git); run devstack from inside the repository"
    )


def _port(env: str, default: int) -> int:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise DevstackError(f"{env}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise DevstackError(f"{env}={port} is outside 1-65535")
    return port


def _flag(env: str) -> bool:
    return os.environ.get(env, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Config:
    """Resolved settings of one stack (one state folder)."""

    repo_root: Path
    state_dir: Path
    pg_port: int
    kafka_port: int
    kafka_controller_port: int
    kafka_libs: Path
    pg_bin: Path | None
    skip_migrations: bool
    testcontainers: bool

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "postgres.log"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def kafka_pom(self) -> Path:
        return self.repo_root / KAFKA_POM

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "credentials.json"

    @property
    def stack_env_file(self) -> Path:
        return self.state_dir / "stack.env"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".lock"

    @property
    def services_dir(self) -> Path:
        return self.state_dir / "services"


def load_config() -> Config:
    """Read the environment: `DEVSTACK_DIR`, the port variables, `DEVSTACK_KAFKA_LIBS`, `PG_BIN`, ..."""
    root = find_repo_root()
    state_raw = os.environ.get(STATE_DIR_ENV, "").strip()
    state_dir = Path(state_raw).expanduser().resolve() if state_raw else root / ".devstack"
    libs_raw = os.environ.get(KAFKA_LIBS_ENV, "").strip()
    kafka_libs = Path(libs_raw).expanduser().resolve() if libs_raw else state_dir / "kafka" / "libs"
    pg_bin_raw = os.environ.get(PG_BIN_ENV, "").strip()
    config = Config(
        repo_root=root,
        state_dir=state_dir,
        pg_port=_port(PG_PORT_ENV, DEFAULT_PG_PORT),
        kafka_port=_port(KAFKA_PORT_ENV, DEFAULT_KAFKA_PORT),
        kafka_controller_port=_port(KAFKA_CONTROLLER_PORT_ENV, DEFAULT_KAFKA_CONTROLLER_PORT),
        kafka_libs=kafka_libs,
        pg_bin=Path(pg_bin_raw).expanduser().resolve() if pg_bin_raw else None,
        skip_migrations=_flag(SKIP_MIGRATIONS_ENV),
        testcontainers=_flag(TESTCONTAINERS_ENV),
    )
    ports = {
        PG_PORT_ENV: config.pg_port,
        KAFKA_PORT_ENV: config.kafka_port,
        KAFKA_CONTROLLER_PORT_ENV: config.kafka_controller_port,
    }
    if len(set(ports.values())) != len(ports):
        listed = ", ".join(f"{name}={port}" for name, port in ports.items())
        raise DevstackError(f"the devstack ports must differ ({listed})")
    return config
