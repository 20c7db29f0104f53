"""The outbox relay drains a database at once when a commit names it, and all of them at each sweep."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from events import outbox, topics
from events.envelope import Envelope
from events.relay import OutboxRelay, Source
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenantschema.migrations import upgrade_async
from tenantschema.urls import asyncpg_url

from tests.support.databases import FreshDatabase
from tests.support.kafka import watch


async def _record(engine: AsyncEngine) -> str:
    event = Envelope(event_type="product.deleted", tenant_id=uuid.uuid4(), producer="tests", data={})
    async with engine.begin() as connection:
        await outbox.record(connection, topics.PRODUCTS, event)
    return str(event.event_id)


async def _states(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [r["state"] for r in await conn.fetch("SELECT state FROM outbox ORDER BY seq")]
    finally:
        await conn.close()


async def test_a_commit_drains_its_own_database_and_the_sweep_all_of_them(
    fresh_database: FreshDatabase, kafka_bootstrap: str
) -> None:
    urls = {"a": await fresh_database(), "b": await fresh_database()}
    for url in urls.values():
        await upgrade_async(url, "dedicated")
    engines = {name: create_async_engine(asyncpg_url(url)) for name, url in urls.items()}
    sources = [Source(name, engine) for name, engine in engines.items()]

    async def list_sources() -> list[Source]:
        return sources

    relay = OutboxRelay(kafka_bootstrap, list_sources, sweep_interval=3600)  # no sweep but the first
    try:
        async with watch(kafka_bootstrap, topics.PRODUCTS) as seen:
            left_behind = await _record(engines["b"])  # e.g. by a process that died before publishing
            await relay.start()
            await seen.wait_for(lambda m: m["event_id"] == left_behind)  # the first pass sweeps all

            in_a, in_b = await _record(engines["a"]), await _record(engines["b"])
            relay.notify("a")
            await seen.wait_for(lambda m: m["event_id"] == in_a)
            await asyncio.sleep(1.0)
            assert in_b not in {m["event_id"] for m in seen.messages}  # b was not named: not polled
            assert await _states(urls["b"]) == ["published", "pending"]

            relay.notify()  # somewhere: sweep everything now
            await seen.wait_for(lambda m: m["event_id"] == in_b)
        assert await _states(urls["a"]) == ["published"]
    finally:
        await relay.stop()
        for engine in engines.values():
            await engine.dispose()
