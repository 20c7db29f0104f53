"""Fresh, empty databases on the dev stack's PostgreSQL (registered as a fixture by tests/conftest.py),
the services' own login URLs, and what pg_stat_activity says about their connections."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from tenantschema.render import quote_ident
from tenantschema.urls import libpq_url, with_database

FreshDatabase = Callable[[], Awaitable[str]]


@pytest.fixture
async def fresh_database(admin_url: str, owner_url: str) -> AsyncIterator[FreshDatabase]:
    """Factory of empty databases owned by the schema owner role; yields the owner's URL to each.

    The runtime role may connect (as on the real databases); every database made is dropped after.
    """
    made: list[str] = []
    owner = make_url(owner_url).username
    assert owner is not None

    async def make() -> str:
        name = f"test_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(libpq_url(admin_url))
        try:
            await admin.execute(f"CREATE DATABASE {name} OWNER {quote_ident(owner)}")
            await admin.execute(f"GRANT CONNECT ON DATABASE {name} TO app_user")
        finally:
            await admin.close()
        made.append(name)
        return libpq_url(with_database(owner_url, name))

    yield make

    admin = await asyncpg.connect(libpq_url(admin_url))
    try:
        for name in made:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


def role_url(stack_env: Mapping[str, str], service: str, database: str = "platform") -> str:
    """A service's own URL from stack.env (`CATALOG_PLATFORM_DATABASE_URL`, ...; tenantschema.roles):
    in-process apps and helpers log in as the role the service runs as, never as app_user."""
    return stack_env[f"{service.upper()}_{database.upper()}_DATABASE_URL"]


def role_settings(stack_env: Mapping[str, str], service: str) -> dict[str, str]:
    """`platform_database_url` / `shared_database_url` of a service's settings, as its own role."""
    return {
        "platform_database_url": role_url(stack_env, service, "platform"),
        "shared_database_url": role_url(stack_env, service, "shared"),
    }


async def connection_names(admin_url: str, role: str) -> set[str]:
    """The application_name of every connection `role` has open right now (pg_stat_activity)."""
    admin = await asyncpg.connect(libpq_url(admin_url))
    try:
        rows = await admin.fetch("SELECT application_name FROM pg_stat_activity WHERE usename = $1", role)
    finally:
        await admin.close()
    return {row["application_name"] for row in rows}


async def wait_for_connection_names(
    admin_url: str, role: str, expected: set[str], *, timeout: float = 15.0, exactly: bool = True
) -> set[str]:
    """Poll pg_stat_activity until `role`'s connections carry exactly the `expected` names (or, with
    `exactly=False`, at least them: the relay's role is shared by every process's relay)."""
    deadline = time.monotonic() + timeout
    while True:
        names = await connection_names(admin_url, role)
        if names == expected if exactly else expected <= names:
            return names
        if time.monotonic() > deadline:
            return names
        await asyncio.sleep(0.2)
