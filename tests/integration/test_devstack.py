"""The dev stack itself: real Kafka semantics, real PostgreSQL roles, process lifecycle, errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import devstack
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from devstack.kafka import libs_complete
from events.topics import REQUESTS, all_topics

CONTRACT_KEYS = (
    "PLATFORM_DATABASE_URL",
    "SHARED_DATABASE_URL",
    "ADMIN_DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "TENANCY_URL",
    "CATALOG_URL",
    "ORDERS_URL",
    "USAGE_URL",
    "MIGRATOR_URL",
)
SERVICE_PORTS = {
    "TENANCY_URL": 8101,
    "CATALOG_URL": 8102,
    "ORDERS_URL": 8103,
    "USAGE_URL": 8104,
    "MIGRATOR_URL": 8105,
}


# ------------------------------------------------------------------------------------------ Kafka


async def _wait_assignment(consumer: AIOKafkaConsumer, tp: TopicPartition, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while tp not in consumer.assignment():
        assert time.monotonic() < deadline, f"{tp} was not assigned within {within} s"
        await asyncio.sleep(0.05)


async def _produce(bootstrap: str, key: bytes, values: range) -> list[tuple[int, int]]:
    """(partition, offset) of each message, produced with acks=all and idempotence."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        placed = []
        for value in values:
            metadata = await producer.send_and_wait(REQUESTS, value=str(value).encode(), key=key)
            placed.append((metadata.partition, metadata.offset))
        return placed
    finally:
        await producer.stop()


def _consumer(bootstrap: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        REQUESTS,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def test_consumer_group_resumes_after_the_committed_offset(kafka_bootstrap: str) -> None:
    key = uuid.uuid4().bytes
    group = f"test-devstack-{uuid.uuid4().hex}"

    first = await _produce(kafka_bootstrap, key, range(10))
    partitions = {partition for partition, _ in first}
    assert len(partitions) == 1, "one key must map to one partition"
    tp = TopicPartition(REQUESTS, partitions.pop())
    first_offsets = [offset for _, offset in first]
    assert first_offsets == list(range(first_offsets[0], first_offsets[0] + 10)), "acks=all, no gaps"

    # Read the first half, commit right after it, stop.
    consumer = _consumer(kafka_bootstrap, group)
    await consumer.start()
    try:
        await _wait_assignment(consumer, tp)
        consumer.seek(tp, first_offsets[0])  # skip what earlier runs left in the topic
        read = await _read_records(consumer, tp, key, 5)
        assert [value for _, value in read] == [0, 1, 2, 3, 4]
        committed = read[-1][0] + 1
        await consumer.commit({tp: committed})
        assert await consumer.committed(tp) == committed
    finally:
        await consumer.stop()

    await _produce(kafka_bootstrap, key, range(10, 15))

    # A new member of the same group resumes exactly at the committed offset.
    consumer = _consumer(kafka_bootstrap, group)
    await consumer.start()
    try:
        await _wait_assignment(consumer, tp)
        assert await consumer.position(tp) == committed
        read = await _read_records(consumer, tp, key, 10)
        assert read[0][0] == committed
        assert [value for _, value in read] == list(range(5, 15))
    finally:
        await consumer.stop()


async def _read_records(
    consumer: AIOKafkaConsumer, tp: TopicPartition, key: bytes, count: int
) -> list[tuple[int, int]]:
    """(offset, value) of the next `count` records with our key on `tp`."""
    found: list[tuple[int, int]] = []
    deadline = time.monotonic() + 30.0
    while len(found) < count:
        assert time.monotonic() < deadline, f"read {len(found)} of {count} records within 30 s"
        batches = await consumer.getmany(tp, timeout_ms=500)
        for record in batches.get(tp, []):
            if record.key == key and len(found) < count:
                found.append((record.offset, int(record.value)))
    return found


async def test_contract_topics_exist_with_six_partitions(kafka_bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {topic["topic"]: topic for topic in await admin.describe_topics(list(all_topics()))}
    finally:
        await admin.close()
    for topic in all_topics():
        assert described[topic]["error_code"] == 0, topic
        assert len(described[topic]["partitions"]) == 6, topic


# -------------------------------------------------------------------------------------- PostgreSQL


def test_stack_env_has_every_contract_key(stack_env: dict[str, str]) -> None:
    on_disk = devstack.read_stack_env(apply_overrides=False)
    for key in (*CONTRACT_KEYS, "OWNER_DATABASE_URL"):
        assert stack_env.get(key), key
        assert on_disk.get(key), key
    for key in ("PLATFORM_DATABASE_URL", "SHARED_DATABASE_URL", "ADMIN_DATABASE_URL", "OWNER_DATABASE_URL"):
        assert urlsplit(stack_env[key]).scheme == "postgresql", key
    for key, port in SERVICE_PORTS.items():
        if key not in os.environ:
            assert stack_env[key] == f"http://127.0.0.1:{port}"


async def test_services_connect_as_a_role_that_cannot_bypass_rls(platform_url: str, shared_url: str) -> None:
    for url, database in ((platform_url, "platform"), (shared_url, "shared")):
        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(
                "SELECT current_database() AS db, r.rolsuper, r.rolbypassrls, r.rolcreatedb, r.rolcreaterole"
                " FROM pg_roles r WHERE r.rolname = current_user"
            )
            assert row is not None
            assert row["db"] == database
            assert not any((row["rolsuper"], row["rolbypassrls"], row["rolcreatedb"], row["rolcreaterole"]))
            can_create = await conn.fetchval("SELECT has_schema_privilege(current_user, 'public', 'CREATE')")
            assert can_create is False
            owns = await conn.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
                " WHERE r.rolname = current_user"
            )
            assert owns == 0
        finally:
            await conn.close()


async def test_the_owner_role_owns_both_databases(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname, pg_get_userbyid(datdba) AS owner,"
            " has_database_privilege('public', datname, 'CONNECT') AS public_connect"
            " FROM pg_database WHERE datname IN ('platform', 'shared') ORDER BY datname"
        )
        owner = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'platform_owner'"
        )
    finally:
        await conn.close()
    assert [(row["datname"], row["owner"], row["public_connect"]) for row in rows] == [
        ("platform", "platform_owner", False),
        ("shared", "platform_owner", False),
    ]
    assert owner is not None
    assert (owner["rolsuper"], owner["rolbypassrls"]) == (False, False)


# ------------------------------------------------------------------------- lifecycle (second stack)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _is_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie waiting for a non-reaping parent counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state in {"Z", "X"}


@pytest.fixture
def isolated_stack() -> Iterator[tuple[Path, dict[str, str], list[int]]]:
    """A state folder, environment and ports for a second stack that cannot touch the session stack."""
    state = Path(tempfile.mkdtemp(prefix="devstack-test-"))
    state.chmod(0o755)  # PostgreSQL runs as the postgres user when the tests run as root
    ports = _free_ports(3)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in devstack.STACK_KEYS and key not in {"TESTCONTAINERS", "DEVSTACK_KAFKA_LIBS"}
    }
    env.update(
        DEVSTACK_DIR=str(state),
        DEVSTACK_PG_PORT=str(ports[0]),
        DEVSTACK_KAFKA_PORT=str(ports[1]),
        DEVSTACK_KAFKA_CONTROLLER_PORT=str(ports[2]),
        DEVSTACK_SKIP_MIGRATIONS="1",
        DEVSTACK_SERVICES="none",
    )
    config = devstack.load_config()
    if libs_complete(config.kafka_libs, config.kafka_pom):
        env["DEVSTACK_KAFKA_LIBS"] = str(config.kafka_libs)  # no second download
    try:
        yield state, env, ports
    finally:
        with contextlib.suppress(Exception):
            _devstack(env, "down", timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def _devstack(env: dict[str, str], command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_up_then_down_leaves_nothing_running(isolated_stack: tuple[Path, dict[str, str], list[int]]) -> None:
    state, env, ports = isolated_stack

    started = _devstack(env, "up")
    assert started.returncode == 0, started.stderr

    pg_pid = int((state / "pg" / "data" / "postmaster.pid").read_text().splitlines()[0])
    kafka_pid = int((state / "kafka" / "kafka.pid").read_text().strip())
    for pid in (pg_pid, kafka_pid):
        os.kill(pid, 0)  # alive
    written = devstack.read_stack_env(state / "stack.env", apply_overrides=False)
    assert f":{ports[0]}/" in written["ADMIN_DATABASE_URL"]
    assert written["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{ports[1]}"

    again = _devstack(env, "up")  # idempotent: reuses the running processes
    assert again.returncode == 0, again.stderr
    assert int((state / "kafka" / "kafka.pid").read_text().strip()) == kafka_pid

    stopped = _devstack(env, "down", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    for pid in (pg_pid, kafka_pid):
        assert _is_gone(pid), f"pid {pid} still runs after down"
    for port in ports:
        assert _port_is_free(port), f"port {port} still in use after down"
    assert not (state / "kafka" / "kafka.pid").exists()
    assert not (state / "pg" / "data" / "postmaster.pid").exists()
    assert not (state / "stack.env").exists()


@pytest.mark.parametrize("which", [0, 1, 2], ids=["postgres", "kafka", "kafka-controller"])
def test_a_busy_port_is_a_one_line_error(
    isolated_stack: tuple[Path, dict[str, str], list[int]], which: int
) -> None:
    state, env, ports = isolated_stack
    variable = ("DEVSTACK_PG_PORT", "DEVSTACK_KAFKA_PORT", "DEVSTACK_KAFKA_CONTROLLER_PORT")[which]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", ports[which]))
        squatter.listen()
        result = _devstack(env, "up", timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(ports[which]) in lines[0]
    assert variable in lines[0]
    assert not (state / "kafka" / "kafka.pid").exists()
    assert not (state / "pg" / "data").exists()
