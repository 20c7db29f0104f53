"""The relay's pieces that need no server: which errors are poison, the relay's URLs, the role name."""

from __future__ import annotations

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)
from devstack import credentials
from events.relay import is_poison
from servicekit.relay import dedicated_relay_url
from servicekit.settings import ServiceSettings
from tenantschema.roles import RELAY_ROLE

RELAY = "postgresql://outbox_relay:relay-secret@db.internal:5432/shared"


def test_only_errors_about_the_message_itself_are_poison() -> None:
    assert is_poison(MessageSizeTooLargeError())
    assert is_poison(RecordTooLargeError())
    # Transient, or the cluster's fault, not the event's: retried for as long as it takes.
    for error in (
        KafkaTimeoutError(),  # aiokafka marks it not retriable, yet it is transient
        KafkaConnectionError(),
        NotLeaderForPartitionError(),
        RequestTimedOutError(),
        TopicAuthorizationFailedError(),
        ValueError("anything else"),
    ):
        assert not is_poison(error), error


def _settings(**values: str) -> ServiceSettings:
    return ServiceSettings(
        platform_database_url="postgresql://app_user:x@db.internal:5432/platform",
        shared_database_url="postgresql://app_user:x@db.internal:5432/shared",
        kafka_bootstrap_servers="kafka:9092",
        **values,  # type: ignore[arg-type]
    )


def test_the_relay_reaches_a_dedicated_database_as_itself() -> None:
    url = dedicated_relay_url(_settings(), RELAY, "tenant_" + "a" * 32)
    assert (url.username, url.password, url.host, url.database) == (
        "outbox_relay",
        "relay-secret",
        "db.internal",
        "tenant_" + "a" * 32,
    )
    templated = dedicated_relay_url(
        _settings(
            dedicated_database_url_template="postgresql://{role}:{password}@tenants.internal:6432/{database}"
        ),
        RELAY,
        "tenant_" + "b" * 32,
    )
    assert (templated.username, templated.password, templated.host, templated.port) == (
        "outbox_relay",
        "relay-secret",
        "tenants.internal",
        6432,
    )


def test_devstack_names_the_relay_role_as_the_schema_does() -> None:
    assert credentials.RELAY_ROLE == RELAY_ROLE
