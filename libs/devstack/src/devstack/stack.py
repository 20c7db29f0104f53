"""up / down / status / run of the whole stack, and the Python API (`ensure_stack`, `read_stack_env`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from devstack import containers, credentials, kafka, postgres, procs, services
from devstack.config import HOST, Config, load_config
from devstack.credentials import DEDICATED_SECRET, SUPERUSER
from devstack.errors import DevstackError
from devstack.postgres import LocalPostgres, PgUrl
from devstack.services import SERVICES, ServiceSpec

log = logging.getLogger("devstack")

DATABASE_KEYS = (
    "PLATFORM_DATABASE_URL",
    "SHARED_DATABASE_URL",
    "ADMIN_DATABASE_URL",
    "OWNER_DATABASE_URL",
    # Each service's own login role (tenantschema.roles): TENANCY_PLATFORM_DATABASE_URL, ...
    *postgres.SERVICE_DATABASE_KEYS,
)
SERVICE_KEYS = tuple(services.SERVICE_PORTS)
STACK_KEYS: tuple[str, ...] = (
    *DATABASE_KEYS,
    *postgres.RELAY_KEYS,
    "KAFKA_BOOTSTRAP_SERVERS",
    "DEDICATED_PASSWORD_SECRET",
    *SERVICE_KEYS,
)


def env_overrides() -> dict[str, str]:
    """The stack settings given in the environment (they win over everything devstack derives)."""
    return {key: value.strip() for key in STACK_KEYS if (value := os.environ.get(key, "")).strip()}


@dataclass
class UpResult:
    """What `up` did and where everything is."""

    env: dict[str, str]
    seconds: float
    cold: bool
    started: list[str]
    local: list[str]
    postgres_version: str | None
    kafka_version: str | None
    stack_env_file: Path
    migrated: bool = True
    created_topics: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        pg_where = PgUrl.parse(self.env["ADMIN_DATABASE_URL"])
        pg_kind = "local" if "postgres" in self.local else "external"
        kafka_kind = "local" if "kafka" in self.local else "external"
        pg_state = "started" if "postgres" in self.started else "already running"
        kafka_state = "started" if "kafka" in self.started else "already running"
        lines = [
            f"PostgreSQL {(self.postgres_version or '?').split()[0]} at {pg_where.host}:{pg_where.port} "
            f"({pg_kind}, {pg_state if pg_kind == 'local' else 'not managed'})",
            f"Kafka {self.kafka_version or '?'} at {self.env['KAFKA_BOOTSTRAP_SERVERS']} "
            f"({kafka_kind}, {kafka_state if kafka_kind == 'local' else 'not managed'})",
        ]
        if not self.migrated:
            lines.append("migrations skipped")
        kind = "cold start" if self.cold else ("start" if self.started else "already up")
        lines.append(f"stack ready in {self.seconds:.1f} s ({kind}); settings in {self.stack_env_file}")
        return lines


# ------------------------------------------------------------------------------------------ stack.env


def write_stack_env(path: Path, env: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# written by `devstack up`, removed by `devstack down`\n")
        for key in STACK_KEYS:
            handle.write(f"{key}={env[key]}\n")
    tmp.replace(path)


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def read_stack_env(path: Path | None = None, *, apply_overrides: bool = True) -> dict[str, str]:
    """The values of `.devstack/stack.env` (by default with environment overrides applied)."""
    path = path or load_config().stack_env_file
    if not path.is_file():
        raise DevstackError(f"{path} does not exist: the stack is not up (run `make up`)")
    values = parse_env_file(path)
    if apply_overrides:
        values.update(env_overrides())
    return values


# ------------------------------------------------------------------------------------------------ up


def selected_services(specs: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """`DEVSTACK_SERVICES=tenancy,catalog` starts only those; `none` starts none; unset: all."""
    raw = os.environ.get("DEVSTACK_SERVICES")
    if raw is None:
        return list(specs)
    names = {name.strip() for name in raw.split(",")} - {"", "none"}
    unknown = names - {spec.name for spec in specs}
    if unknown:
        raise DevstackError(f"DEVSTACK_SERVICES names unknown services: {', '.join(sorted(unknown))}")
    return [spec for spec in specs if spec.name in names]


def up(
    config: Config | None = None,
    *,
    specs: Sequence[ServiceSpec] = SERVICES,
    allow_containers: bool = True,
) -> UpResult:
    """Start whatever is not running, bootstrap databases and topics, write stack.env; idempotent."""
    config = config or load_config()
    started_at = time.monotonic()
    overrides = env_overrides()
    specs = selected_services(specs)
    if config.testcontainers:
        if not allow_containers:
            raise DevstackError(
                "TESTCONTAINERS=1: containers live only as long as the process that starts them; "
                "use `devstack run` or devstack.ensure_stack() instead of `up`"
            )
        creds = credentials.load_or_create(config.credentials_file)
        started = containers.start(
            postgres="ADMIN_DATABASE_URL" not in overrides,
            kafka="KAFKA_BOOTSTRAP_SERVERS" not in overrides,
            superuser_password=creds.password(SUPERUSER),
        )
        overrides = {**started, **overrides}
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with procs.file_lock(config.lock_file):
        return _up_locked(config, overrides, specs, started_at)


def _up_locked(
    config: Config, overrides: dict[str, str], specs: Sequence[ServiceSpec], started_at: float
) -> UpResult:
    pg: LocalPostgres | None = None
    broker: kafka.LocalKafka | None = None
    local_pg = "ADMIN_DATABASE_URL" not in overrides
    if local_pg and not config.credentials_file.exists() and (config.pg_data / "PG_VERSION").exists():
        raise DevstackError(
            f"{config.credentials_file} is missing but a cluster exists in {config.pg_data}; "
            "its superuser password is lost: run `make clean` to start afresh"
        )
    creds = credentials.load_or_create(config.credentials_file)
    if local_pg:
        pg = LocalPostgres(config, creds)
    if "KAFKA_BOOTSTRAP_SERVERS" not in overrides:
        broker = kafka.LocalKafka(config)

    # Preflight: nothing is started before every port is known to be usable.
    pg_was_running = pg is not None and pg.running_pid() is not None
    kafka_was_running = broker is not None and broker.running_pid() is not None
    if pg is not None:
        pg.preflight()
    if broker is not None:
        broker.preflight()
    services_before = set(services.running(config))

    cold = False
    started: list[str] = []
    try:
        java: str | None = None
        if broker is not None and not kafka_was_running:
            java = kafka.find_java()
            cold |= kafka.ensure_jars(config)
        if pg is not None and not pg_was_running:
            pg.prepare()
            cold |= not pg.is_initialised()

        # Kafka's JVM boots while PostgreSQL initialises and starts.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            kafka_future = (
                pool.submit(broker.start, java) if broker is not None and java is not None else None
            )
            try:
                if pg is not None and pg.start():
                    started.append("postgres")
            except BaseException:
                if kafka_future is not None:
                    concurrent.futures.wait([kafka_future])
                raise
            if kafka_future is not None and kafka_future.result() is not None:
                started.append("kafka")
                assert broker is not None
                cold |= broker.formatted_now

        if pg is not None:
            port = pg.running_port() or config.pg_port
            if port != config.pg_port:
                log.warning(
                    "PostgreSQL already runs on port %d (not %d); `down` first to move it",
                    port,
                    config.pg_port,
                )
            admin_url = PgUrl(SUPERUSER, creds.password(SUPERUSER), HOST, port, "postgres").render()
        else:
            admin_url = overrides["ADMIN_DATABASE_URL"]
        urls = postgres.database_urls(admin_url, creds, overrides)
        urls |= postgres.relay_urls(urls, creds, overrides)
        pg_version = asyncio.run(_postgres_phase(urls, pg))
        migrated = False
        if config.skip_migrations:
            log.info("skipping migrations (DEVSTACK_SKIP_MIGRATIONS)")
        else:
            migrated = postgres.migrate(urls, config.state_dir / "migrated.json")

        if broker is not None:
            bootstrap = broker.bootstrap_servers()
            if broker.running_port() not in (None, config.kafka_port):
                log.warning(
                    "Kafka already runs on %s (not port %d); `down` first to move it",
                    bootstrap,
                    config.kafka_port,
                )
        else:
            bootstrap = overrides["KAFKA_BOOTSTRAP_SERVERS"]
        created = asyncio.run(_kafka_phase(bootstrap, broker))

        env = {
            **urls,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DEDICATED_PASSWORD_SECRET": creds.password(DEDICATED_SECRET),
            **services.service_urls(),
            **overrides,
        }
        started += services.start(config, env, specs)
        asyncio.run(services.wait_ready(config, specs))
        write_stack_env(config.stack_env_file, env)
    except BaseException:
        _rollback(config, pg, broker, pg_was_running, kafka_was_running, services_before)
        raise

    local = [name for name, component in (("postgres", pg), ("kafka", broker)) if component is not None]
    return UpResult(
        env=env,
        seconds=time.monotonic() - started_at,
        cold=cold,
        started=started,
        local=local,
        postgres_version=pg_version,
        kafka_version=kafka.kafka_version(config.kafka_libs) if broker is not None else None,
        stack_env_file=config.stack_env_file,
        migrated=migrated,
        created_topics=created,
    )


async def _postgres_phase(urls: dict[str, str], pg: LocalPostgres | None) -> str:
    pid = pg.running_pid() if pg is not None else None
    log_file = pg.config.pg_log if pg is not None else None
    version = await postgres.wait_ready(urls["ADMIN_DATABASE_URL"], pid=pid, log_file=log_file)
    await postgres.bootstrap(urls)
    await postgres.bootstrap_relay(urls)
    return version


async def _kafka_phase(bootstrap: str, broker: kafka.LocalKafka | None) -> list[str]:
    from events.topics import all_topics

    pid = broker.running_pid() if broker is not None else None
    log_files = broker.log_files if broker is not None else ()
    await kafka.wait_ready(bootstrap, pid=pid, log_files=log_files)
    created = await kafka.ensure_topics(bootstrap, all_topics())
    if created:
        log.info("created %d Kafka topics", len(created))
        await kafka.warm_group_coordinator(bootstrap)
    return created


def _rollback(
    config: Config,
    pg: LocalPostgres | None,
    broker: kafka.LocalKafka | None,
    pg_was_running: bool,
    kafka_was_running: bool,
    services_before: set[str],
) -> None:
    """Stop what this `up` started (and only that), so a failed `up` leaves nothing behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
    try:
        for name in set(services.running(config)) - services_before:
            services.stop(config, names=[name])
        if broker is not None and not kafka_was_running:
            broker.stop()
        if pg is not None and not pg_was_running:
            pg.stop()
    except Exception as exc:
        log.warning("cleaning up after the failed start: %s", exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------------------------------------- down


def down(config: Config | None = None) -> list[str]:
    """Stop the processes recorded in the PID files (never by name); returns what was stopped."""
    config = config or load_config()
    stopped = [f"container {name}" for name in containers.stop()]
    if not config.state_dir.is_dir():
        return stopped
    with procs.file_lock(config.lock_file):
        stopped += [f"service {name}" for name in services.stop(config)]
        if kafka.LocalKafka(config).stop():
            stopped.append("kafka")
        if LocalPostgres(config).stop():
            stopped.append("postgres")
        config.stack_env_file.unlink(missing_ok=True)
    return stopped


# -------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # running | stopped | external
    detail: str


def status(config: Config | None = None) -> list[ComponentStatus]:
    config = config or load_config()
    overrides = env_overrides()
    result: list[ComponentStatus] = []

    pg = LocalPostgres(config)
    pg_pid = pg.running_pid()
    if pg_pid is not None:
        result.append(
            ComponentStatus("postgres", "running", f"pid {pg_pid}, {HOST}:{pg.running_port()}, {pg.data}")
        )
    elif "ADMIN_DATABASE_URL" in overrides:
        result.append(
            ComponentStatus("postgres", "external", postgres.redact(overrides["ADMIN_DATABASE_URL"]))
        )
    else:
        result.append(ComponentStatus("postgres", "stopped", str(pg.data)))

    broker = kafka.LocalKafka(config)
    kafka_pid = broker.running_pid()
    if kafka_pid is not None:
        version = kafka.kafka_version(config.kafka_libs) or "?"
        result.append(
            ComponentStatus("kafka", "running", f"pid {kafka_pid}, {broker.bootstrap_servers()}, {version}")
        )
    elif "KAFKA_BOOTSTRAP_SERVERS" in overrides:
        result.append(ComponentStatus("kafka", "external", overrides["KAFKA_BOOTSTRAP_SERVERS"]))
    else:
        result.append(ComponentStatus("kafka", "stopped", str(broker.data)))

    alive = services.running(config)
    for spec in SERVICES:
        pid = alive.pop(spec.name, None)
        state = "running" if pid is not None else "stopped"
        result.append(
            ComponentStatus(f"service {spec.name}", state, f"pid {pid}" if pid else f"port {spec.port}")
        )
    for name, pid in alive.items():
        result.append(ComponentStatus(f"service {name}", "running", f"pid {pid} (not registered)"))
    env_state = "present" if config.stack_env_file.is_file() else "absent"
    result.append(ComponentStatus("stack.env", env_state, str(config.stack_env_file)))
    return result


# ----------------------------------------------------------------------------------------------- run


# A companion of `run` (the live demo): started in a thread of its own once the stack is ready, given
# an event that is set when the stack stops. It returns an exit code or None: returned while the
# stack runs, a code stops it now with that code (None: it keeps running); returned after the event,
# a code becomes run's exit code unless the stack already failed.
Companion = Callable[[UpResult, threading.Event], int | None]
COMPANION_STOP_TIMEOUT = 20.0


class _CompanionThread:
    def __init__(self, companion: Companion, result: UpResult, stop: threading.Event) -> None:
        self.stopping = threading.Event()
        self.code: int | None = None
        self._stop = stop

        def _body() -> None:
            try:
                self.code = companion(result, self.stopping)
            except Exception:
                log.exception("the companion of `run` failed")
            if self.code is not None:
                self._stop.set()

        self.thread = threading.Thread(target=_body, name="devstack-run-companion", daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stopping.set()
        self.thread.join(COMPANION_STOP_TIMEOUT)
        if self.thread.is_alive():
            log.warning("the demo did not stop within %.0f s; stopping anyway", COMPANION_STOP_TIMEOUT)


def run(
    config: Config | None = None,
    *,
    on_ready: Callable[[UpResult], None] | None = None,
    check_interval: float = 2.0,
    companion: Companion | None = None,
) -> int:
    """`up`, stay in the foreground until SIGINT/SIGTERM (or a component dies, or the companion asks
    to stop), then `down`."""
    config = config or load_config()

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    stop = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.getsignal(signal.SIGINT)
    exit_code = 0
    try:
        try:
            result = up(config, allow_containers=True)
        except KeyboardInterrupt:
            log.info("interrupted during start-up")
            return 130
        if on_ready is not None:
            on_ready(result)
        signal.signal(signal.SIGINT, _request_stop)
        signal.signal(signal.SIGTERM, _request_stop)
        log.info("running; press Ctrl-C to stop")
        job = _CompanionThread(companion, result, stop) if companion is not None else None
        while not stop.wait(check_interval):
            dead = _dead_components(config, result)
            if dead:
                log.error("%s stopped unexpectedly; shutting the stack down", ", ".join(dead))
                exit_code = 1
                break
        if job is not None:
            job.finish()
            if job.code is not None and not exit_code:
                exit_code = job.code
        # A second Ctrl-C must not interrupt the clean shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopped = down(config)
        log.info("stopped: %s", ", ".join(stopped) or "nothing")
        return exit_code
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _dead_components(config: Config, result: UpResult) -> list[str]:
    dead: list[str] = []
    if "postgres" in result.local and LocalPostgres(config).running_pid() is None:
        dead.append("PostgreSQL")
    if "kafka" in result.local and kafka.LocalKafka(config).running_pid() is None:
        dead.append("Kafka")
    alive = services.running(config)
    # Only the services this stack started (DEVSTACK_SERVICES): one never started has not died.
    dead += [f"service {spec.name}" for spec in selected_services(SERVICES) if spec.name not in alive]
    return dead


# ------------------------------------------------------------------------------------------- the API


def ensure_stack() -> dict[str, str]:
    """Start the stack unless it is up (idempotent, quick when up); returns the stack.env values.

    Environment overrides (external servers) apply. Safe to call from inside a running event loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return up().env
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: up().env).result()
