"""The outbox relay in one process: which databases it drains when, who may claim, leases, poison
events, and per-tenant commit order for concurrent transactions."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
import pytest
from events import outbox
from events.envelope import Envelope
from events.relay import OutboxRelay, Source
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenantschema.urls import asyncpg_url

from tests.integration.events.conftest import RELAY_TEST_TOPIC, MakeOutboxDatabase, OutboxDatabase
from tests.support.kafka import watch


@asynccontextmanager
async def relay_over(
    kafka: str,
    polled: Sequence[OutboxDatabase] = (),
    dedicated: Sequence[OutboxDatabase] = (),
    leftovers: list[str] | None = None,
    **options: object,
) -> AsyncIterator[OutboxRelay]:
    engines: dict[str, AsyncEngine] = {
        db.name: create_async_engine(asyncpg_url(db.relay_url), pool_size=1, max_overflow=1)
        for db in (*polled, *dedicated)
    }

    async def list_leftovers(n: int, _interval: float) -> list[str]:
        handed, remaining = (leftovers or [])[:n], (leftovers or [])[n:]
        if leftovers is not None:
            leftovers[:] = remaining
        return handed

    relay = OutboxRelay(
        kafka,
        [Source(db.name, "shared", engines[db.name]) for db in polled],
        dedicated=lambda name: Source(name, "dedicated", engines[name]),
        leftovers=list_leftovers,
        **options,  # type: ignore[arg-type]
    )
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
        for engine in engines.values():
            await engine.dispose()


async def test_a_commit_drains_its_own_database_and_the_leftover_round_the_others(
    outbox_database: MakeOutboxDatabase, kafka_bootstrap: str
) -> None:
    a, b = await outbox_database(), await outbox_database()
    leftovers = [b.name]
    async with watch(kafka_bootstrap, RELAY_TEST_TOPIC) as seen:
        left_behind = await b.record(uuid.uuid4())  # e.g. by a process that died before publishing
        async with relay_over(
            kafka_bootstrap, dedicated=[a, b], leftovers=leftovers, sweep_interval=0.2
        ) as relay:
            await seen.wait_for(lambda m: m["event_id"] == left_behind)  # handed out by the round

            in_a, in_b = await a.record(uuid.uuid4()), await b.record(uuid.uuid4())
            relay.notify(a.name)
            await seen.wait_for(lambda m: m["event_id"] == in_a)
            await asyncio.sleep(1.0)
            assert in_b not in {m["event_id"] for m in seen.messages}  # b was not named: not polled
            assert [r["state"] for r in await b.rows()] == ["published", "pending"]

            leftovers.append(b.name)  # the next round names it
            await seen.wait_for(lambda m: m["event_id"] == in_b)
    assert [r["state"] for r in await a.rows()] == ["published"]


async def test_only_the_relay_role_may_claim_settle_or_prune(
    stack_env: dict[str, str], outbox_database: MakeOutboxDatabase
) -> None:
    db = await outbox_database()
    await db.record(uuid.uuid4())
    app = await asyncpg.connect(
        dsn=db.owner_url, user="app_user", password=_password(stack_env["SHARED_DATABASE_URL"])
    )
    try:
        for statement in (
            "SELECT * FROM outbox_claim('app', 10, 30, false)",
            "SELECT outbox_settle('app', '{1}', '{1}', '{}', NULL, '{}', '{}')",
            "SELECT outbox_prune('1 day')",
            "SELECT * FROM outbox_backlog()",
            "SELECT * FROM outbox",
            "UPDATE outbox_leases SET holder = 'app'",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(statement)
    finally:
        await app.close()
    relay = await asyncpg.connect(db.relay_url)
    try:
        [row] = await relay.fetch("SELECT seq, lease_token FROM outbox_claim('r1', 10, 30, false)")
        settle = "SELECT outbox_settle('r1', $1, $2, '{}', NULL, '{}', '{}')"
        assert await relay.fetchval(settle, [row["lease_token"]], [row["seq"]]) == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await relay.execute("SELECT * FROM outbox")  # the functions only, never the table
    finally:
        await relay.close()


def _password(url: str) -> str:
    password = make_url(url).password
    assert password is not None
    return password


async def test_one_relay_per_partition_and_a_lapsed_lease_settles_nothing(
    outbox_database: MakeOutboxDatabase,
) -> None:
    db = await outbox_database()
    tenant = uuid.uuid4()
    for _ in range(3):
        await db.record(tenant)
    settle = "SELECT outbox_settle($1, $2, $3, '{}', NULL, '{}', '{}')"
    relay = await asyncpg.connect(db.relay_url)
    try:
        first = await relay.fetch("SELECT seq, lease_token FROM outbox_claim('r1', 2, 1, false)")
        assert len(first) == 2
        # r1 holds the tenant's partition: r2 gets nothing of it, not even the third row.
        assert await relay.fetch("SELECT seq FROM outbox_claim('r2', 10, 1, false)") == []
        await asyncio.sleep(1.2)  # r1 stalls past its lease
        taken = await relay.fetch("SELECT seq, lease_token FROM outbox_claim('r2', 10, 30, false)")
        assert [r["seq"] for r in taken] == [first[0]["seq"], first[1]["seq"], first[1]["seq"] + 1]
        assert taken[0]["lease_token"] != first[0]["lease_token"]
        stale = await relay.fetchval(settle, "r1", [first[0]["lease_token"]], [r["seq"] for r in first])
        assert stale == 0  # r1's lease is gone: it settles nothing
        # Nor with r2's token (which r1 could only guess): the holder is checked too.
        assert await relay.fetchval(settle, "r1", [taken[0]["lease_token"]], [r["seq"] for r in first]) == 0
        fresh = await relay.fetchval(settle, "r2", [taken[0]["lease_token"]], [r["seq"] for r in taken])
        assert fresh == 3
    finally:
        await relay.close()
    assert [(r["state"], r["send_count"]) for r in await db.rows()] == [("published", 1)] * 3


async def test_a_poison_event_is_settled_failed_and_holds_nothing_back(
    outbox_database: MakeOutboxDatabase, kafka_bootstrap: str
) -> None:
    db = await outbox_database()
    poisoned, other = uuid.uuid4(), uuid.uuid4()
    # 1.5 MB of attributes, written straight to the outbox (the HTTP edge may refuse it first).
    huge = {"attributes": {"blob": "x" * 1_500_000}}
    async with watch(kafka_bootstrap, RELAY_TEST_TOPIC) as seen:
        before = await db.record(poisoned, data={"n": 0})
        poison = await db.record(poisoned, data=huge)
        after = [await db.record(poisoned, data={"n": i}) for i in range(1, 4)]
        others = [await db.record(other, data={"n": i}) for i in range(3)]
        async with relay_over(kafka_bootstrap, polled=[db]):
            await seen.wait_for(lambda m: m["tenant_id"] in {str(poisoned), str(other)}, count=7)
            await asyncio.sleep(0.5)  # anything more (the poison in some form) would show up now
    mine = [m["event_id"] for m in seen.messages if m["tenant_id"] == str(poisoned)]
    assert mine == [before, *after]  # the tenant's next events went out, in order
    assert [m["event_id"] for m in seen.messages if m["tenant_id"] == str(other)] == others
    rows = {str(r["event_id"]): r for r in await db.rows()}
    assert rows[poison]["state"] == "failed"
    assert "MessageSizeTooLarge" in rows[poison]["last_error"]
    assert rows[poison]["send_count"] == 1  # given up at once, never retried
    assert {r["state"] for e, r in rows.items() if e != poison} == {"published"}


async def test_concurrent_transactions_of_a_tenant_are_relayed_in_commit_order(
    outbox_database: MakeOutboxDatabase, kafka_bootstrap: str
) -> None:
    """A second transaction of the tenant cannot insert its event until the first one ends: without
    the per-tenant lock in outbox.record it could draw a higher seq and commit first, and a relay
    would then see (and send) it before the first one's event."""
    db = await outbox_database()
    tenant = uuid.uuid4()
    early = Envelope(event_type="product.updated", tenant_id=tenant, producer="tests", data={"i": 1})
    late = Envelope(event_type="product.updated", tenant_id=tenant, producer="tests", data={"i": 2})
    async with db.writer.connect() as first, db.writer.connect() as second:
        await first.begin()
        await outbox.record(first, RELAY_TEST_TOPIC, early)
        await second.begin()
        blocked = asyncio.create_task(outbox.record(second, RELAY_TEST_TOPIC, late))
        await asyncio.sleep(0.5)
        assert not blocked.done()  # waits for the first transaction's tenant lock
        await first.commit()
        await asyncio.wait_for(blocked, 5)
        await second.commit()
    rows = await db.rows()
    assert [str(r["event_id"]) for r in rows] == [str(early.event_id), str(late.event_id)]
    async with watch(kafka_bootstrap, RELAY_TEST_TOPIC) as seen, relay_over(kafka_bootstrap, polled=[db]):
        messages = await seen.wait_for(lambda m: m["tenant_id"] == str(tenant), count=2)
    assert [m["event_id"] for m in messages] == [str(early.event_id), str(late.event_id)]
    assert json.loads(json.dumps(messages[0]["data"])) == {"i": 1}


async def test_a_stopped_relay_gives_its_leases_back_so_its_successor_starts_at_once(
    outbox_database: MakeOutboxDatabase, kafka_bootstrap: str
) -> None:
    db = await outbox_database()
    tenant = uuid.uuid4()
    async with watch(kafka_bootstrap, RELAY_TEST_TOPIC) as seen:
        async with relay_over(kafka_bootstrap, polled=[db], lease_seconds=30) as first:
            before = await db.record(tenant)
            await seen.wait_for(lambda m: m["event_id"] == before)
            owner = await asyncpg.connect(db.owner_url)
            try:
                held = await owner.fetchval(
                    "SELECT count(*) FROM outbox_leases WHERE holder = $1 AND expires_at > now()",
                    first.relay,
                )
            finally:
                await owner.close()
            assert held > 0  # a polled source's leases stay with their holder while it runs
        owner = await asyncpg.connect(db.owner_url)
        try:
            left = await owner.fetchval("SELECT count(*) FROM outbox_leases WHERE holder = $1", first.relay)
            members = await owner.fetchval("SELECT count(*) FROM outbox_relays WHERE relay = $1", first.relay)
        finally:
            await owner.close()
        assert (left, members) == (0, 0)
        # A successor (a rolling restart) takes the tenant's partition now, not once 30 s have lapsed.
        async with relay_over(kafka_bootstrap, polled=[db], lease_seconds=30):
            after = await db.record(tenant)
            await seen.wait_for(lambda m: m["event_id"] == after, timeout=10)
            for _ in range(50):  # settled once Kafka acknowledged it
                if [r["state"] for r in await db.rows()] == ["published", "published"]:
                    break
                await asyncio.sleep(0.1)
    assert [r["state"] for r in await db.rows()] == ["published", "published"]


async def test_an_idle_polled_source_is_claimed_from_within_idle_poll_not_the_sweep_interval(
    outbox_database: MakeOutboxDatabase, kafka_bootstrap: str
) -> None:
    """Another process's commit does not wake this relay: after a quiet spell its polled source waits
    at most `idle_poll` for the next claim. Before, the backoff grew to the sweep interval (1 s), the
    whole of events.relay_latency_p99's tail when writes resumed."""
    db = await outbox_database()
    tenant = uuid.uuid4()
    async with (
        watch(kafka_bootstrap, RELAY_TEST_TOPIC) as seen,
        relay_over(kafka_bootstrap, polled=[db], sweep_interval=60.0, idle_poll=0.05),
    ):
        first = await db.record(tenant)
        await seen.wait_for(lambda m: m["event_id"] == first, timeout=10)
        await asyncio.sleep(6.0)  # idle (a backoff doubling up to the sweep interval would be at ~5 s)
        later = await db.record(tenant)  # committed elsewhere: no notify()
        await seen.wait_for(lambda m: m["event_id"] == later, timeout=2.5)
