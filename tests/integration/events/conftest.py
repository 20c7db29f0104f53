"""Outbox databases for the relay tests: fresh ones at the dedicated head (one tenant or many: the
outbox is the same table), reached as the relay's role and as the runtime role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest
from events import outbox
from events.envelope import Envelope
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenantschema.migrations import upgrade_async
from tenantschema.urls import asyncpg_url, libpq_url

from tests.support.databases import FreshDatabase

# The relay tests' events go to a topic of their own: on the services' topics, their consumers would
# have to dead-letter thousands of events that are not theirs (and the orders tests wait behind them).
RELAY_TEST_TOPIC = "tests.relay.v1"


@pytest.fixture(scope="session")
async def relay_topic(kafka_bootstrap: str) -> str:
    from devstack.kafka import ensure_topics

    await ensure_topics(kafka_bootstrap, [RELAY_TEST_TOPIC])
    return RELAY_TEST_TOPIC


@dataclass
class OutboxDatabase:
    name: str
    owner_url: str  # libpq
    relay_url: str  # libpq, as outbox_relay
    writer: AsyncEngine  # the owner: writes rows as a service would (no RLS on this variant)

    async def record(self, tenant_id: uuid.UUID, *, data: dict[str, object] | None = None) -> str:
        event = Envelope(event_type="product.updated", tenant_id=tenant_id, producer="tests", data=data or {})
        async with self.writer.begin() as connection:
            await outbox.record(connection, RELAY_TEST_TOPIC, event)
        return str(event.event_id)

    async def rows(self) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.owner_url)
        try:
            return list(
                await conn.fetch(
                    "SELECT seq, event_id, tenant_id, state, send_count, last_error FROM outbox ORDER BY seq"
                )
            )
        finally:
            await conn.close()


MakeOutboxDatabase = Callable[[], Awaitable[OutboxDatabase]]


def as_relay(url: str, stack_env: dict[str, str]) -> str:
    relay = make_url(stack_env["RELAY_SHARED_DATABASE_URL"])
    return libpq_url(make_url(url).set(username=relay.username, password=relay.password))


@pytest.fixture
async def outbox_database(
    fresh_database: FreshDatabase, stack_env: dict[str, str], relay_topic: str
) -> AsyncIterator[MakeOutboxDatabase]:
    writers: list[AsyncEngine] = []

    async def make() -> OutboxDatabase:
        url = await fresh_database()
        await upgrade_async(url, "dedicated", app_role="app_user")
        name = make_url(url).database
        assert name is not None
        writer = create_async_engine(asyncpg_url(url))
        writers.append(writer)
        return OutboxDatabase(name, url, as_relay(url, stack_env), writer)

    yield make
    for writer in writers:
        await writer.dispose()


__all__ = ["RELAY_TEST_TOPIC", "MakeOutboxDatabase", "OutboxDatabase", "as_relay"]
