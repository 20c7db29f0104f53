"""Hostile inputs for the table-driven edge tests: NUL bytes, nesting, oversized numbers and bodies,
tampered cursors, and the assertions every refusal shares (status, problem body naming the field)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import asyncpg
import httpx
import pytest
from servicekit.settings import ServiceSettings
from tenantschema.urls import libpq_url, with_database

PROBLEM: Final = "application/problem+json"
NUL: Final = "\x00"
INT64_MAX: Final = 2**63 - 1
MAX_JSON_DEPTH: Final = 32  # servicekit.validation
MAX_JSON_BYTES: Final = 64 * 1024
MAX_BODY: Final = ServiceSettings.model_fields["max_body_bytes"].default  # MAX_BODY_BYTES's default


def deep(depth: int, leaf: Any = 1) -> Any:
    """An object nested `depth` levels deep: deep(1) == {"d": 1}."""
    value = leaf
    for _ in range(depth):
        value = {"d": value}
    return value


def big_object(size: int) -> dict[str, str]:
    """An object serializing to more than `size` bytes."""
    return {"blob": "x" * size}


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with `status`; for `field`, one of its `errors` names that field."""
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert isinstance(problem["detail"], str)
    if field is not None:
        named = [e.get("field") for e in problem.get("errors", [])]
        assert field in named, f"no error names {field!r}: {problem}"
    return problem


async def chunked(body: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The body as a stream: httpx sends it without Content-Length (Transfer-Encoding: chunked)."""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def _b64(document: Any) -> str:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def tampered_cursors() -> list[tuple[str, str]]:
    """(case, cursor) pairs no service issued, in the shapes today's codecs would try to read: each must
    be a 400 naming `cursor`, never a 5xx or a page."""
    an_id = str(uuid.uuid4())
    huge = int("9" * 400)
    nested = ("[" * 150 + json.dumps(an_id) + "]" * 150).encode()  # deep, and within 500 characters
    return [
        ("garbage", "not-a-cursor!!"),
        ("not base64 json", _b64(b"\xff\xfe\x00garbage")),
        ("400-digit integer", _b64([huge, an_id])),
        ("400-digit position", _b64({"k": "position", "v": [huge, "slug"]})),
        ("2^40 position", _b64({"k": "position", "v": [2**40, "slug"]})),
        ("2^40 first value", _b64([2**40, an_id])),
        ("deep json", _b64(nested)),
        ("year 1 with offset", _b64(["0001-01-01T00:00:00+05:00", an_id])),
        ("year 1 with offset, keyed", _b64({"k": "created", "v": ["0001-01-01T00:00:00+14:00", an_id]})),
        ("year 9999 with negative offset", _b64(["9999-12-31T23:59:59-14:00", an_id])),
        ("rank overflow", _b64({"k": "rank", "v": ["1e400", an_id]})),
        ("wrong arity", _b64(["2026-01-01T00:00:00+00:00"])),
        ("not a uuid", _b64(["2026-01-01T00:00:00+00:00", "x" * 40])),
        ("nul inside", _b64(["2026-01-01T00:00:00+00:00\x00", an_id])),
    ]


class Database:
    """A superuser connection to one database of the stack (reads past RLS: what was written)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, admin_url: str, database: str) -> Database:
        return cls(await asyncpg.connect(libpq_url(with_database(admin_url, database))))

    async def count(self, sql: str, *args: Any) -> int:
        value = await self.connection.fetchval(sql, *args)
        return int(value)

    async def close(self) -> None:
        await self.connection.close()


@pytest.fixture(scope="module")
async def shared(admin_url: str) -> AsyncIterator[Database]:
    """The shared database as its superuser (RLS bypassed): what a refused request left there."""
    database = await Database.open(admin_url, "shared")
    yield database
    await database.close()
