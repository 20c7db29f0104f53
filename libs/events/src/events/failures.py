"""Which handler failures pass by themselves, and which never will.

A consumer must not dead-letter a message because PostgreSQL restarted, a tenant was at its cutover
or the dead-letter publish itself failed: those are waited out (the partition held, see
dead_letter.py). Only a message that is itself wrong (unparseable, an invalid envelope or data), or a
handler that fails the same non-transient way every time, goes to `<topic>.dlq`.

The exception and everything it was raised from (`__cause__`, `__context__`) are looked at, since
SQLAlchemy wraps the driver's error and tenantdb wraps SQLAlchemy's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum

import pydantic
from aiokafka.errors import KafkaError
from sqlalchemy import exc as sa_exc


class Failure(StrEnum):
    TRANSIENT = "transient"  # retried for as long as it lasts
    INVALID = "invalid"  # the message itself is wrong: dead-lettered at once
    ERROR = "error"  # anything else: dead-lettered once it failed the same way N times


class InvalidEvent(ValueError):
    """Raised by a handler for a well-formed message it can never apply (wrong shape of `data`...)."""


# PostgreSQL SQLSTATEs (Appendix A) that describe the server or the moment, not the statement.
_TRANSIENT_CLASSES = (
    "08",  # connection exception
    "53",  # insufficient resources: too many connections, disk full, out of memory
    "57",  # operator intervention: admin shutdown, crash shutdown, cannot connect now, query canceled
    "58",  # system error (I/O)
)
_TRANSIENT_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "40003",  # statement_completion_unknown
        "55P03",  # lock_not_available (lock_timeout)
        "55006",  # object_in_use
        "25P03",  # idle_in_transaction_session_timeout
        # tenantdb's fence (tenantschema.fencing_ddl.FENCED_SQLSTATE; events does not depend on
        # tenantschema): a stale route, the tenant moved. tenantdb normally turns it into TenantMoving.
        "TD001",
    }
)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _sqlstate(error: BaseException) -> str | None:
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return state if isinstance(state, str) else None


def sqlstates(error: BaseException) -> Iterator[str]:
    """The SQLSTATEs of `error` and of what it wraps (SQLAlchemy's DBAPIError over asyncpg's error)."""
    for link in _chain(error):
        state = _sqlstate(link)
        if state is not None:
            yield state


def is_transient_sqlstate(state: str) -> bool:
    return state in _TRANSIENT_STATES or state.startswith(_TRANSIENT_CLASSES)


def classify(error: BaseException) -> Failure:
    for link in _chain(error):
        if getattr(link, "retryable", False) is True:  # tenantdb.TenantMoving, pool exhaustion
            return Failure.TRANSIENT
        state = _sqlstate(link)
        if state is not None:
            return Failure.TRANSIENT if is_transient_sqlstate(state) else Failure.ERROR
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return Failure.TRANSIENT
        if isinstance(link, sa_exc.TimeoutError | sa_exc.DisconnectionError):  # pool timeout
            return Failure.TRANSIENT
        if isinstance(link, KafkaError | OSError | TimeoutError | ConnectionError):
            return Failure.TRANSIENT
        if type(link).__name__ == "InterfaceError" and "closed" in str(link):
            # asyncpg's "connection is closed" (the server went away between two statements)
            return Failure.TRANSIENT
        if isinstance(link, pydantic.ValidationError | json.JSONDecodeError | UnicodeDecodeError):
            return Failure.INVALID
        if isinstance(link, InvalidEvent):
            return Failure.INVALID
    return Failure.ERROR
