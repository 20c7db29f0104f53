"""Which failures a consumer waits out and which it dead-letters (events.failures)."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pydantic
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from events.envelope import Envelope
from events.failures import Failure, InvalidEvent, classify
from sqlalchemy import exc as sa_exc
from tenantdb import TenantMoving, TenantNotFound


def _wrapped(error: BaseException) -> BaseException:
    """As SQLAlchemy raises a driver error: its own type, the driver's error as the cause."""
    try:
        try:
            raise error
        except BaseException as inner:
            raise sa_exc.DBAPIError("SELECT 1", {}, inner) from inner
    except sa_exc.DBAPIError as outer:
        return outer


def _invalid_envelope() -> pydantic.ValidationError:
    try:
        Envelope.model_validate_json(b"not json")
    except pydantic.ValidationError as error:
        return error
    raise AssertionError("unreachable")


class _State(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


TRANSIENT = [
    ConnectionRefusedError(111, "Connection refused"),
    OSError("network unreachable"),
    TimeoutError(),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.SerializationError("could not serialize access"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError("terminating connection due to idle timeout"),
    asyncpg.InterfaceError("connection is closed"),
    _State("TD001"),
    TenantMoving(uuid.uuid4(), 5.0),
    sa_exc.TimeoutError("QueuePool limit of size 10 overflow 0 reached"),
    KafkaConnectionError(),
    KafkaTimeoutError(),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_failures_are_waited_out(error: BaseException) -> None:
    assert classify(error) is Failure.TRANSIENT
    assert classify(_wrapped(error)) is Failure.TRANSIENT


@pytest.mark.parametrize(
    "error",
    [_invalid_envelope(), json.JSONDecodeError("x", "doc", 0), InvalidEvent("bad data")],
    ids=lambda e: type(e).__name__,
)
def test_wrong_messages_are_invalid(error: BaseException) -> None:
    assert classify(error) is Failure.INVALID


@pytest.mark.parametrize(
    "error",
    [
        TenantNotFound(uuid.uuid4()),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        RuntimeError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_count_towards_the_dead_letter(error: BaseException) -> None:
    assert classify(error) is Failure.ERROR
    assert classify(_wrapped(error)) is Failure.ERROR
