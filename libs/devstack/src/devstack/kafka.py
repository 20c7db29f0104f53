"""A single-node Apache Kafka (KRaft, broker + controller) run from its Maven Central jars."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from devstack import procs
from devstack.config import HOST, KAFKA_CONTROLLER_PORT_ENV, KAFKA_PORT_ENV, Config
from devstack.errors import DevstackError

log = logging.getLogger("devstack")

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
PARTITIONS = 6
REPLICATION = 1
MIN_JAVA = 17
_MARKER = ".devstack-complete"
_KAFKA_JAR = re.compile(r"^kafka_2\.13-(\d[\w.\-]*)\.jar$")
_TOPIC_ALREADY_EXISTS = 36
_JVM_OPTS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def cluster_id() -> str:
    """A KRaft cluster id: the base64url form of a random UUID, without padding (as Kafka's Uuid)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def kafka_version(libs: Path) -> str | None:
    """The broker version, read from the kafka_2.13-<version>.jar name."""
    if not libs.is_dir():
        return None
    for jar in libs.iterdir():
        match = _KAFKA_JAR.match(jar.name)
        if match:
            return match.group(1)
    return None


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs every refused connection at ERROR; readiness polling expects those."""
    logger = logging.getLogger("aiokafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


# ---------------------------------------------------------------------------------------- runtime


def find_java() -> str:
    """The java executable (JAVA_HOME first); installs a headless JRE as root if there is none."""
    java_home = os.environ.get("JAVA_HOME", "").strip()
    candidates = [str(Path(java_home) / "bin" / "java")] if java_home else []
    found = next((c for c in candidates if os.access(c, os.X_OK)), None) or shutil.which("java")
    if found is None and procs.is_root() and shutil.which("apt-get"):
        log.info("java not found; installing openjdk-17-jre-headless")
        procs.apt_install("openjdk-17-jre-headless")
        found = shutil.which("java")
    if found is None:
        raise DevstackError(
            f"java not found: Kafka needs a Java {MIN_JAVA}+ runtime on PATH "
            "(apt-get install openjdk-17-jre-headless) or JAVA_HOME"
        )
    result = subprocess.run([found, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < MIN_JAVA:
            raise DevstackError(f"{found} is Java {major}; Kafka 4 needs Java {MIN_JAVA} or newer")
    return found


def _find_maven() -> str:
    found = shutil.which("mvn")
    if found is None and procs.is_root() and shutil.which("apt-get"):
        log.info("mvn not found; installing maven")
        procs.apt_install("maven")
        found = shutil.which("mvn")
    if found is None:
        raise DevstackError(
            "mvn not found: devstack downloads the Kafka jars with Maven (apt-get install maven)"
        )
    return found


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def libs_complete(libs: Path, pom: Path) -> bool:
    marker = libs / _MARKER
    try:
        recorded = marker.read_text().strip()
    except OSError:
        return False
    return recorded == _pom_digest(pom) and kafka_version(libs) is not None


def ensure_jars(config: Config) -> bool:
    """Download the broker's jars with Maven unless a complete copy is there; True when it downloaded."""
    libs, pom = config.kafka_libs, config.kafka_pom
    if not pom.is_file():
        raise DevstackError(f"{pom} is missing; it lists the Kafka jars to download")
    if libs_complete(libs, pom):
        return False
    mvn = _find_maven()
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading the Kafka jars with Maven into %s", libs)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={partial}",
                "-DincludeScope=runtime",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DevstackError(
            "downloading the Kafka jars with Maven took more than 15 minutes; check the network"
        ) from None
    if result.returncode != 0 or kafka_version(partial) is None:
        shutil.rmtree(partial, ignore_errors=True)
        reason = procs.last_meaningful_line(result.stdout + "\n" + result.stderr)
        raise DevstackError(f"downloading the Kafka jars with Maven failed: {reason}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    (libs / _MARKER).write_text(_pom_digest(pom) + "\n")
    log.info("Kafka %s jars downloaded in %.1f s", kafka_version(libs), time.monotonic() - started)
    return True


# -------------------------------------------------------------------------------------- the broker


class LocalKafka:
    """The broker in `<state>/kafka`: config files, one-time storage format, detached JVM, PID file."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dir = config.kafka_dir
        self.data = self.dir / "data"
        self.properties = self.dir / "server.properties"
        self.log4j = self.dir / "log4j2.properties"
        self.pid_file = self.dir / "kafka.pid"
        self.log_file = self.dir / "kafka.log"
        self.out_file = self.dir / "kafka.out"
        self.formatted_now = False

    @property
    def libs(self) -> Path:
        return self.config.kafka_libs

    def running_pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        if pid is None or not procs.is_alive(pid):
            return None
        command = procs.cmdline(pid)
        if "kafka.Kafka" not in command or str(self.properties) not in command:
            return None
        return pid

    def running_port(self) -> int | None:
        """The client port of the running broker, from the server.properties it was started with."""
        try:
            text = self.properties.read_text()
        except OSError:
            return None
        match = re.search(r"^listeners=.*PLAINTEXT://[^:,]+:(\d+)", text, re.MULTILINE)
        return int(match.group(1)) if match else None

    def bootstrap_servers(self) -> str:
        port = self.running_port() if self.running_pid() is not None else None
        return f"{HOST}:{port or self.config.kafka_port}"

    def _write_config(self) -> None:
        port, ctrl = self.config.kafka_port, self.config.kafka_controller_port
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(
            "# written by devstack on every start\n"
            "process.roles=broker,controller\n"
            "node.id=1\n"
            f"controller.quorum.voters=1@{HOST}:{ctrl}\n"
            f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{ctrl}\n"
            f"advertised.listeners=PLAINTEXT://{HOST}:{port}\n"
            "controller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            "inter.broker.listener.name=PLAINTEXT\n"
            f"log.dirs={self.data}\n"
            f"num.partitions={PARTITIONS}\n"
            "offsets.topic.replication.factor=1\n"
            "transaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\n"
            "share.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\n"
            "group.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=false\n"
        )
        self.log4j.write_text(
            "# written by devstack: everything to kafka.log, Kafka's own chatter at WARN\n"
            "status = warn\n"
            "name = devstack\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_file}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            "logger.kafka.name = kafka\n"
            "logger.kafka.level = WARN\n"
            "logger.apachekafka.name = org.apache.kafka\n"
            "logger.apachekafka.level = WARN\n"
            "logger.statechange.name = state.change.logger\n"
            "logger.statechange.level = WARN\n"
        )

    def _java_command(self, java: str, main: str, *args: str) -> list[str]:
        return [
            java,
            *_JVM_OPTS,
            f"-Dlog4j2.configurationFile={self.log4j}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _format(self, java: str) -> None:
        if (self.data / "meta.properties").is_file():
            return
        log.info("formatting the KRaft storage in %s", self.data)
        command = self._java_command(
            java,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id()}",
            "-c",
            str(self.properties),
        )
        command[1:3] = ["-Xms64m", "-Xmx256m"]
        result = subprocess.run(
            command,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            reason = procs.last_meaningful_line(result.stderr or result.stdout)
            raise DevstackError(
                f"formatting the Kafka storage failed: {reason}",
                procs.log_details(self.log_file),
            )
        self.formatted_now = True

    def start(self, java: str) -> int | None:
        """Start the broker detached unless it runs; returns the new PID (None if it already ran)."""
        if self.running_pid() is not None:
            return None
        self.pid_file.unlink(missing_ok=True)
        self._write_config()
        self._format(java)
        log.info("starting Kafka %s on %s:%d", kafka_version(self.libs) or "?", HOST, self.config.kafka_port)
        with self.out_file.open("ab") as out:
            process = subprocess.Popen(
                self._java_command(java, "kafka.Kafka", str(self.properties)),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN.append(process)  # keeps Popen from warning about a still-running child
        procs.write_pid(self.pid_file, process.pid)
        return process.pid

    def stop(self) -> bool:
        """SIGTERM the broker from the PID file (SIGKILL after 30 s); True when it was running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)  # stale
            return False
        log.info("stopping Kafka (pid %d)", pid)
        procs.terminate(pid, name="Kafka", timeout=STOP_TIMEOUT)
        self.pid_file.unlink(missing_ok=True)
        return True

    def preflight(self) -> None:
        if self.running_pid() is not None:
            return
        procs.require_free_port(self.config.kafka_port, what="Kafka", env_var=KAFKA_PORT_ENV)
        procs.require_free_port(
            self.config.kafka_controller_port, what="Kafka controller", env_var=KAFKA_CONTROLLER_PORT_ENV
        )

    @property
    def log_files(self) -> tuple[Path, Path]:
        return (self.out_file, self.log_file)


_CHILDREN: list[subprocess.Popen[bytes]] = []


# ----------------------------------------------------------------------------- readiness + topics


async def _admin(bootstrap: str) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, client_id="devstack")
    try:
        await admin.start()
    except BaseException:
        await admin.close()
        raise
    return admin


async def wait_ready(
    bootstrap: str, *, within: float = READY_TIMEOUT, pid: int | None = None, log_files: Sequence[Path] = ()
) -> None:
    """Wait until an admin client can connect and list topics."""
    deadline = time.monotonic() + within
    last_error = "no attempt"
    with quiet_aiokafka():
        while time.monotonic() < deadline:
            if pid is not None and not procs.is_alive(pid):
                raise DevstackError("Kafka exited during start-up", procs.log_details(*log_files))
            try:
                admin = await _admin(bootstrap)
                try:
                    await admin.list_topics()
                    return
                finally:
                    await admin.close()
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.3)
    raise DevstackError(
        f"Kafka at {bootstrap} was not ready within {within:.0f} s ({last_error})",
        procs.log_details(*log_files),
    )


async def ensure_topics(bootstrap: str, topics: Sequence[str], *, within: float = 60.0) -> list[str]:
    """Create missing topics (6 partitions, replication 1) and wait for their leaders; returns the created."""
    from aiokafka.admin import NewTopic

    with quiet_aiokafka():
        admin = await _admin(bootstrap)
        try:
            existing = set(await admin.list_topics())
            missing = [topic for topic in topics if topic not in existing]
            if missing:
                response = await admin.create_topics(
                    [
                        NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=REPLICATION)
                        for topic in missing
                    ]
                )
                for entry in response.topic_errors:
                    topic, code = entry[0], entry[1]
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        message = entry[2] if len(entry) > 2 else ""
                        raise DevstackError(
                            f"creating Kafka topic {topic} failed (error code {code}: {message})"
                        )
            deadline = time.monotonic() + within
            while True:
                described = await admin.describe_topics(list(topics))
                pending = [
                    t["topic"]
                    for t in described
                    if t["error_code"] != 0
                    or not t["partitions"]
                    or any(p["leader"] < 0 for p in t["partitions"])
                ]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise DevstackError(
                        f"Kafka topics without a leader after {within:.0f} s: {', '.join(pending)}"
                    )
                await asyncio.sleep(0.2)
            for t in described:
                if len(t["partitions"]) != PARTITIONS:
                    log.warning(
                        "topic %s has %d partitions, expected %d",
                        t["topic"],
                        len(t["partitions"]),
                        PARTITIONS,
                    )
            return missing
        finally:
            await admin.close()


async def warm_group_coordinator(bootstrap: str, *, within: float = 30.0) -> bool:
    """Make the broker create `__consumer_offsets` now, so the first consumer group does not wait for it."""
    deadline = time.monotonic() + within
    with quiet_aiokafka():
        admin = await _admin(bootstrap)
        try:
            while time.monotonic() < deadline:
                try:
                    await admin.find_coordinator("devstack-warm-up")
                    return True
                except Exception:
                    await asyncio.sleep(0.2)
        finally:
            await admin.close()
    log.warning("the Kafka group coordinator was not available within %.0f s", within)
    return False
