"""devstack's pure parts: URLs, stack.env parsing, settings, cluster ids, bench output lines."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
from devstack import kafka, procs
from devstack.config import load_config
from devstack.credentials import SERVICE_ROLES, Credentials
from devstack.errors import DevstackError
from devstack.postgres import SERVICE_DATABASE_KEYS, PgUrl, database_urls, redact
from devstack.services import database_env
from devstack.stack import STACK_KEYS, read_stack_env, write_stack_env

from bench import Measure


def test_urls_round_trip_with_awkward_passwords() -> None:
    url = PgUrl("app_user", "p@ss:w/rd%?#", "127.0.0.1", 54329, "platform").render()
    assert url.startswith("postgresql://app_user:")
    assert PgUrl.parse(url) == PgUrl("app_user", "p@ss:w/rd%?#", "127.0.0.1", 54329, "platform")
    assert "p%40ss" not in redact(url)


def test_database_urls_derive_from_the_admin_url_unless_overridden() -> None:
    services = {name: f"pw-{name}" for name in SERVICE_ROLES}
    credentials = Credentials({"postgres": "s", "platform_owner": "o", "app_user": "a", **services})
    admin = "postgresql://postgres:s@db.example:6543/postgres"
    urls = database_urls(admin, credentials, {})
    assert urls["OWNER_DATABASE_URL"] == "postgresql://platform_owner:o@db.example:6543/platform"
    assert urls["PLATFORM_DATABASE_URL"] == "postgresql://app_user:a@db.example:6543/platform"
    assert urls["SHARED_DATABASE_URL"] == "postgresql://app_user:a@db.example:6543/shared"
    # Each service logs in as its own role (tenantschema.roles), with its own password.
    assert (
        urls["CATALOG_PLATFORM_DATABASE_URL"]
        == "postgresql://catalog_service:pw-catalog_service@db.example:6543/platform"
    )
    assert (
        urls["MIGRATOR_SHARED_DATABASE_URL"]
        == "postgresql://migrator_service:pw-migrator_service@db.example:6543/shared"
    )
    assert set(SERVICE_DATABASE_KEYS) <= set(urls)
    assert set(SERVICE_DATABASE_KEYS) <= set(STACK_KEYS)
    override = "postgresql://svc:x@elsewhere:5432/shared"
    overridden = database_urls(admin, credentials, {"SHARED_DATABASE_URL": override})
    assert overridden["SHARED_DATABASE_URL"] == override
    # The services' URLs follow an overridden server and database, as their own roles.
    assert overridden["ORDERS_SHARED_DATABASE_URL"] == (
        "postgresql://orders_service:pw-orders_service@elsewhere:5432/shared"
    )
    with pytest.raises(DevstackError):
        database_urls("mysql://admin@x/db", credentials, {})


def test_stack_env_round_trip_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {key: f"value-of-{key.lower()}" for key in STACK_KEYS}
    path = tmp_path / "stack.env"
    write_stack_env(path, values)
    assert path.stat().st_mode & 0o777 == 0o600
    for key in STACK_KEYS:
        monkeypatch.delenv(key, raising=False)
    assert read_stack_env(path) == values
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    assert read_stack_env(path)["KAFKA_BOOTSTRAP_SERVERS"] == "broker:9092"
    assert (
        read_stack_env(path, apply_overrides=False)["KAFKA_BOOTSTRAP_SERVERS"]
        == values["KAFKA_BOOTSTRAP_SERVERS"]
    )
    with pytest.raises(DevstackError, match="not up"):
        read_stack_env(tmp_path / "missing.env")


def test_settings_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSTACK_DIR", str(tmp_path))
    monkeypatch.setenv("DEVSTACK_PG_PORT", "6000")
    config = load_config()
    assert config.state_dir == tmp_path.resolve()
    assert config.pg_port == 6000
    assert config.kafka_libs == tmp_path.resolve() / "kafka" / "libs"
    assert config.kafka_pom.is_file()
    monkeypatch.setenv("DEVSTACK_PG_PORT", "not-a-port")
    with pytest.raises(DevstackError, match="DEVSTACK_PG_PORT"):
        load_config()
    monkeypatch.setenv("DEVSTACK_PG_PORT", "19092")
    monkeypatch.delenv("DEVSTACK_KAFKA_PORT", raising=False)
    with pytest.raises(DevstackError, match="must differ"):
        load_config()


def test_cluster_ids_look_like_kafka_uuids() -> None:
    cluster_id = kafka.cluster_id()
    assert len(cluster_id) == 22
    assert "=" not in cluster_id
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_a_listening_port_is_busy() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not procs.port_is_free(port)
        with pytest.raises(DevstackError, match=f"port {port} .*SOME_VAR"):
            procs.require_free_port(port, what="x", env_var="SOME_VAR")


def test_bench_lines_follow_the_contract() -> None:
    line = json.loads(Measure("tenantdb.example", 2.0, "ms", baseline=4.0).json_line())
    assert line == {"bench": "tenantdb.example", "value": 2.0, "unit": "ms", "baseline": 4.0, "ratio": 0.5}
    assert json.loads(Measure("usage.x", 1.0, "s").json_line())["ratio"] is None


def test_each_service_process_gets_its_own_roles_urls() -> None:
    env = {
        "PLATFORM_DATABASE_URL": "postgresql://app_user:a@db/platform",
        "SHARED_DATABASE_URL": "postgresql://app_user:a@db/shared",
        "CATALOG_PLATFORM_DATABASE_URL": "postgresql://catalog_service:c@db/platform",
        "CATALOG_SHARED_DATABASE_URL": "postgresql://catalog_service:c@db/shared",
    }
    assert database_env("catalog", env) == {
        "PLATFORM_DATABASE_URL": "postgresql://catalog_service:c@db/platform",
        "SHARED_DATABASE_URL": "postgresql://catalog_service:c@db/shared",
    }
    assert database_env("orders", env) == {}  # no URLs of its own: it keeps what it was given
    assert database_env("bench_app", env) == {}  # not a service with a role
