"""`TESTCONTAINERS=1`: PostgreSQL and Kafka in Docker containers instead of local processes.

The containers live as long as the Python process that started them (testcontainers' reaper removes
them afterwards), so this suits `devstack run` and `ensure_stack()` in a test session, not `up`.
testcontainers is imported lazily: it is not a dependency of the default path.

Kafka runs from the `apache/kafka` image through a generic container: testcontainers-python's
`KafkaContainer` drives Confluent's image start scripts, which `apache/kafka` does not have.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import socket
from typing import Any

from devstack.credentials import SUPERUSER
from devstack.errors import DevstackError
from devstack.postgres import PgUrl

log = logging.getLogger("devstack")

POSTGRES_IMAGE = "postgres:16"
KAFKA_IMAGE = "apache/kafka:4.1.1"

_started: dict[str, Any] = {}
_env: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _import() -> tuple[Any, Any]:
    try:
        from testcontainers.core.container import DockerContainer
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        raise DevstackError(
            "TESTCONTAINERS=1 needs the testcontainers package (with its postgres extra), "
            "which is not installed: install it or unset TESTCONTAINERS to run local processes"
        ) from None
    return PostgresContainer, DockerContainer


def start(*, postgres: bool, kafka: bool, superuser_password: str) -> dict[str, str]:
    """Start the containers missing in this process; returns ADMIN_DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS."""
    postgres_cls, docker_cls = _import()
    if postgres and "postgres" not in _started:
        log.info("starting container %s", POSTGRES_IMAGE)
        container = postgres_cls(
            POSTGRES_IMAGE, username=SUPERUSER, password=superuser_password, dbname="postgres"
        )
        container.start()
        _started["postgres"] = container
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(5432))
        _env["ADMIN_DATABASE_URL"] = PgUrl(SUPERUSER, superuser_password, host, port, "postgres").render()
    if kafka and "kafka" not in _started:
        log.info("starting container %s", KAFKA_IMAGE)
        # The advertised address must be the host's: bind the same port on both sides.
        port = _free_port()
        container = docker_cls(KAFKA_IMAGE).with_bind_ports(9092, port)
        settings = {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_NUM_PARTITIONS": "6",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        }
        for key, value in settings.items():
            container = container.with_env(key, value)
        container.start()
        _started["kafka"] = container
        _env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
    if _started and not _registered:
        atexit.register(stop)
        _registered.append(True)
    return dict(_env)


_registered: list[bool] = []


def running() -> list[str]:
    return sorted(_started)


def stop() -> list[str]:
    stopped: list[str] = []
    for name, container in list(_started.items()):
        with contextlib.suppress(Exception):
            container.stop()
        stopped.append(name)
        del _started[name]
    _env.clear()
    return stopped
