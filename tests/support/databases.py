"""Fresh, empty databases on the dev stack's PostgreSQL (registered as a fixture by tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

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
