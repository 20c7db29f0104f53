"""The last line of the edge: a data exception from PostgreSQL (SQLSTATE class 22), or the driver's
refusal to encode an argument, is a logged 422 problem, never a 500; a conflict PostgreSQL settles by
cancelling one side (a real deadlock, a statement timeout) is a retryable 503; any other database error
stays a 500 problem."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from servicekit import problems
from servicekit.problems import install_problem_handlers
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.types import DateTime, Integer
from tenantschema.urls import asyncpg_url, libpq_url

from tests.support.hostile import assert_problem

# (statement, its parameters): each fails in the database or in the driver with a data exception.
STATEMENTS = {
    "division_by_zero": (text("SELECT 1 / 0"), {}),  # 22012
    "invalid_text_representation": (text("SELECT CAST('x' AS integer)"), {}),  # 22P02
    "numeric_value_out_of_range": (text("SELECT CAST(1e20 AS numeric(12, 2))"), {}),  # 22003
    "nul_in_text": (text("SELECT CAST(:v AS text)"), {"v": "a\x00b"}),  # 22021
    "invalid_json": (text("SELECT CAST(:v AS jsonb)"), {"v": '{"a": NaN}'}),  # 22P02
    "int4_out_of_range_in_driver": (
        text("SELECT :v").bindparams(bindparam("v", type_=Integer)),
        {"v": 2**40},
    ),
    "year_1_with_offset_in_driver": (
        text("SELECT :v").bindparams(bindparam("v", type_=DateTime(timezone=True))),
        {"v": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))},
    ),
}


@pytest.fixture(scope="module")
async def client(shared_url: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_async_engine(asyncpg_url(shared_url), pool_size=1)
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/sql/{name}")
    async def run(name: str) -> dict[str, str]:
        statement, parameters = STATEMENTS[name]
        async with engine.connect() as connection:
            await connection.execute(statement, parameters)
        return {"ran": name}

    @app.get("/driver")
    async def driver() -> dict[str, str]:
        # A statement on a raw asyncpg connection (as the catalog's hottest read): unwrapped errors.
        connection = await asyncpg.connect(libpq_url(shared_url))
        try:
            await connection.fetchval("SELECT $1::int4", 2**40)
        finally:
            await connection.close()
        return {"ran": "driver"}

    @app.get("/deadlock")
    async def deadlock() -> dict[str, str]:
        # Two transactions taking two locks in opposite orders: PostgreSQL cancels one of them.
        first, second = [await asyncpg.connect(libpq_url(shared_url)) for _ in range(2)]

        async def take(
            connection: asyncpg.Connection,
            keys: tuple[int, int],
            holding: asyncio.Event,
            other: asyncio.Event,
        ) -> None:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", keys[0])
                holding.set()
                await other.wait()
                await connection.execute("SELECT pg_advisory_xact_lock($1)", keys[1])

        try:
            a, b = asyncio.Event(), asyncio.Event()
            results = await asyncio.gather(
                take(first, (7301, 7302), a, b), take(second, (7302, 7301), b, a), return_exceptions=True
            )
        finally:
            await first.close()
            await second.close()
        raise next(r for r in results if isinstance(r, BaseException))

    @app.get("/statement-timeout")
    async def statement_timeout() -> dict[str, str]:
        async with engine.connect() as connection:
            await connection.execute(text("SET LOCAL statement_timeout = '20ms'"))
            await connection.execute(text("SELECT pg_sleep(2)"))
        return {"ran": "never"}

    @app.get("/undefined-table")
    async def undefined_table() -> dict[str, str]:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT * FROM no_such_table"))
        return {"ran": "never"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        yield http
    await engine.dispose()


class Recorder:
    """Stands in for the module's logger: what was logged, whatever the logging set-up of the run."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda message, **fields: self.lines.append((level, message, fields))


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_data_exception_is_a_logged_422(
    client: httpx.AsyncClient, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(problems, "log", recorder)
    problem = assert_problem(await client.get(f"/sql/{name}"), 422)
    assert problem["sqlstate"].startswith("22")
    assert problem["errors"][0]["type"] == "data_exception"
    [(level, message, fields)] = recorder.lines
    assert (level, message) == ("warning", "data exception from the database")
    assert fields["sqlstate"] == problem["sqlstate"]


async def test_driver_data_error_unwrapped_is_a_422(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/driver"), 422)


async def test_other_database_errors_stay_500_problems(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.get("/undefined-table"), 500)
    assert "sqlstate" not in problem


@pytest.mark.parametrize(("path", "sqlstate"), [("/deadlock", "40P01"), ("/statement-timeout", "57014")])
async def test_a_conflict_the_database_cancelled_is_a_retryable_503(
    client: httpx.AsyncClient, path: str, sqlstate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(problems, "log", recorder)
    response = await client.get(path)
    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert ("warning", "transient database conflict") in [(level, m) for level, m, _ in recorder.lines]
    assert [f["sqlstate"] for _, _, f in recorder.lines] == [sqlstate]
