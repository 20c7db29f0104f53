"""usage counts exactly: a replayed set counts once, late and out-of-order events land in their own
day and month, malformed ones go to the DLQ while the consumer goes on; the API reads it back."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from events import dead_letter, topics
from events.thresholds import Triggers
from servicekit.platform import PlatformDB
from usage.domain import Tally, parse, utc_now
from usage.usecases import PreparedBatch, UsageService

from tests.integration.usage.conftest import (
    Counts,
    counts_of,
    end_offsets,
    new_tenants,
    order_placed,
    product_event,
    publish,
    requests_counted,
    usage_app,
    wait_consumed,
)
from tests.support.databases import role_url
from tests.support.kafka import watch


def expected_counts(events: list[dict[str, Any]], tenant_id: uuid.UUID, today: date) -> Counts:
    """What the events say, computed here independently of usage's code."""
    daily: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0])
    monthly: dict[date, int] = defaultdict(int)
    products = 0
    for event in events:
        if event["tenant_id"] != str(tenant_id):
            continue
        kind = event["event_type"]
        if kind == "api.requests_counted":
            day = datetime.fromisoformat(event["data"]["window_start"]).astimezone(UTC).date()
            daily[day][0] += event["data"]["count"]
            monthly[day.replace(day=1)] += event["data"]["count"]
            continue
        day = datetime.fromisoformat(event["occurred_at"]).astimezone(UTC).date()
        if kind == "product.created":
            daily[day][1] += 1
            products += 1
        elif kind == "product.deleted":
            products -= 1
        elif kind == "order.placed":
            daily[day][2] += 1
    return Counts(
        daily={d: (c[0], c[1], c[2]) for d, c in daily.items()},
        monthly=dict(monthly),
        product_count=products,
        monthly_requests=monthly.get(today.replace(day=1), 0),
    )


def mixed_events(tenants: list[uuid.UUID], now: datetime) -> list[dict[str, Any]]:
    rng = random.Random(7)
    events: list[dict[str, Any]] = []
    for tenant_id in tenants:
        for i in range(60):
            start = now - timedelta(hours=rng.randint(0, 60), seconds=i)
            events.append(requests_counted(tenant_id, rng.randint(1, 50), start))
        for _ in range(7):
            events.append(
                product_event("product.created", tenant_id, now - timedelta(hours=rng.randint(0, 60)))
            )
        for _ in range(2):
            events.append(product_event("product.deleted", tenant_id, now))
        for _ in range(4):
            events.append(order_placed(tenant_id, now - timedelta(hours=rng.randint(0, 60))))
    return events


async def test_the_same_events_published_twice_count_once(stack_env: dict[str, str]) -> None:
    tenants = await new_tenants(stack_env, 3)
    now = datetime.now(UTC)
    events = mixed_events(tenants, now)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    mark = await end_offsets(bootstrap)
    await publish(bootstrap, events + events[::7])  # duplicates within what one batch reads, too
    async with usage_app(stack_env, start_at=mark) as (app, client):
        group = app.state.settings.usage_group_id
        await wait_consumed(stack_env, group)
        first = {t: await counts_of(stack_env, t) for t in tenants}
        for tenant_id in tenants:
            assert first[tenant_id] == expected_counts(events, tenant_id, now.date())

        await publish(bootstrap, events)  # the same event ids again, at new offsets
        await wait_consumed(stack_env, group)
        for tenant_id in tenants:
            assert await counts_of(stack_env, tenant_id) == first[tenant_id]

        response = await client.get(f"/v1/usage/{tenants[0]}")
        assert response.status_code == 200
        body = response.json()
        assert body["tenant_id"] == str(tenants[0])
        assert body["product_count"] == first[tenants[0]].product_count
        assert body["monthly_requests"] == first[tenants[0]].monthly_requests
        assert body["month"] == f"{now.year:04d}-{now.month:02d}"
        month_days = {
            d: c for d, c in first[tenants[0]].daily.items() if d.replace(day=1) == now.date().replace(day=1)
        }
        assert {
            date.fromisoformat(d["date"]): (d["requests_count"], d["products_count"], d["orders_count"])
            for d in body["daily"]
            if (d["requests_count"], d["products_count"], d["orders_count"]) != (0, 0, 0)
        } == month_days

        busiest = await client.get("/v1/usage", params={"order_by": "requests", "limit": 200})
        assert busiest.status_code == 200
        assert {"month", "order_by", "items"} <= set(busiest.json())


async def test_late_out_of_order_events_land_in_their_own_day_and_month(stack_env: dict[str, str]) -> None:
    (tenant_id,) = await new_tenants(stack_env, 1)
    edges = [
        datetime(2026, 10, 31, 23, 59, 59, 900000, tzinfo=UTC),
        datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 15, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 11, 16, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC),
    ]
    # A window opened in another zone: attributed by its UTC day (23:30 on the 30th in UTC).
    offset_zone = datetime(2026, 12, 1, 1, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    events = [requests_counted(tenant_id, 10 + i, at) for i, at in enumerate(edges)]
    events.append(requests_counted(tenant_id, 1000, offset_zone - timedelta(hours=2)))
    events += [order_placed(tenant_id, at) for at in edges]
    events += [product_event("product.created", tenant_id, at) for at in edges[::2]]
    random.Random(3).shuffle(events)
    late, early = events[: len(events) // 2], events[len(events) // 2 :]
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    async with usage_app(stack_env, start_at=await end_offsets(bootstrap)) as (app, client):
        group = app.state.settings.usage_group_id
        await publish(bootstrap, early)
        await wait_consumed(stack_env, group)
        await publish(bootstrap, late)  # after the later days were already counted
        await wait_consumed(stack_env, group)
        counts = await counts_of(stack_env, tenant_id)
        assert counts == expected_counts(events, tenant_id, datetime.now(UTC).date())
        assert counts.daily[date(2026, 10, 31)] == (10, 1, 1)
        assert counts.daily[date(2026, 11, 1)] == (11, 0, 1)
        assert counts.monthly[date(2026, 11, 1)] == 11 + 12 + 13 + 14 + 1000
        november = await client.get(f"/v1/usage/{tenant_id}", params={"month": "2026-11"})
        assert november.status_code == 200
        assert [d["date"] for d in november.json()["daily"]] == [
            "2026-11-01",
            "2026-11-15",
            "2026-11-16",
            "2026-11-30",
        ]


async def test_malformed_events_are_dead_lettered_and_the_consumer_goes_on(stack_env: dict[str, str]) -> None:
    (tenant_id,) = await new_tenants(stack_env, 1)
    now = datetime.now(UTC)
    bad_count = requests_counted(tenant_id, 5, now)
    bad_count["data"]["count"] = "five"
    no_tenant = requests_counted(tenant_id, 5, now)
    no_tenant["tenant_id"] = "not-a-uuid"
    good = [requests_counted(tenant_id, 7, now), requests_counted(tenant_id, 8, now)]
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    mark = await end_offsets(bootstrap)
    async with (
        usage_app(stack_env, start_at=mark) as (app, _),
        watch(bootstrap, topics.dlq(topics.REQUESTS)) as letters,
    ):
        group = app.state.settings.usage_group_id
        bad = [
            b"{not json " + uuid.uuid4().hex.encode(),
            json.dumps(bad_count).encode(),
            json.dumps(no_tenant).encode(),
        ]
        await publish(bootstrap, [good[0]], raw=[(topics.REQUESTS, value) for value in bad])
        await publish(bootstrap, [good[1]])
        await wait_consumed(stack_env, group)
        # Earlier tests' malformed messages are in the topic too (this group reads it from the start).
        mine = [
            i
            for i, h in enumerate(letters.headers)
            if h.get(dead_letter.GROUP) == group.encode() and letters.raw[i] in bad
        ]
        assert len(mine) == 3
        errors = [letters.headers[i][dead_letter.ERROR].decode() for i in mine]
        assert any("data.count" in e for e in errors)
        assert any("tenant_id" in e for e in errors)
        assert all(letters.headers[i][dead_letter.ORIGINAL_TOPIC] == topics.REQUESTS.encode() for i in mine)
        counts = await counts_of(stack_env, tenant_id)
        assert counts.daily[now.date()] == (15, 0, 0)


async def test_usage_api_refuses_what_it_cannot_answer(stack_env: dict[str, str]) -> None:
    async with usage_app(stack_env, reconcile_enabled=False) as (_, client):
        unknown = await client.get(f"/v1/usage/{uuid.uuid4()}")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"].startswith("application/problem+json")
        for params, field in [
            ({"month": "2026-13"}, "month"),
            ({"month": "26-01"}, "month"),
            ({"order_by": "bandwidth"}, "order_by"),
            ({"limit": "0"}, "limit"),
            ({"limit": "201"}, "limit"),
        ]:
            response = await client.get("/v1/usage", params=params)
            assert response.status_code in (400, 422), (params, response.status_code)
            assert field in response.text
        assert (await client.get("/v1/usage/not-a-uuid")).status_code in (400, 422)


def _numbered(tenant_id: uuid.UUID, counter: uuid.UUID, sequence: int, start: datetime) -> dict[str, Any]:
    event = requests_counted(tenant_id, 100 + sequence, start)
    event["data"] |= {"counter_id": str(counter), "sequence": sequence}
    return event


async def test_numbered_request_counts_count_once_by_their_counters_mark(stack_env: dict[str, str]) -> None:
    """What servicekit's counter sends: per (counter, tenant) sequence 1, 2, 3 ..., each resent as
    it is (same event id, same sequence) until acknowledged, the next made only after. usage keeps a
    mark per (counter, tenant), no row per event: resends right after the original, and the whole
    set again at new offsets, count nothing more; two counters of one tenant count apart; a second
    consumer group reading the same records (the stack's usage beside a test's) adds nothing."""
    tenants = await new_tenants(stack_env, 2)
    now = datetime.now(UTC).replace(microsecond=0)
    counters = [uuid.uuid4(), uuid.uuid4()]
    originals = [
        _numbered(tenant_id, counter, sequence, now - timedelta(minutes=sequence))
        for tenant_id in tenants
        for counter in counters
        for sequence in range(1, 6)
    ]
    sent: list[dict[str, Any]] = []
    for event in originals:  # sequences 2 and 4 resent once (a publish that timed out but landed)
        sent.append(event)
        if event["data"]["sequence"] in (2, 4):
            sent.append(event)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    mark = await end_offsets(bootstrap)
    await publish(bootstrap, sent)
    async with usage_app(stack_env, start_at=mark) as (app, _):
        await wait_consumed(stack_env, app.state.settings.usage_group_id)
        first = {t: await counts_of(stack_env, t) for t in tenants}
        for tenant_id in tenants:
            assert first[tenant_id] == expected_counts(originals, tenant_id, now.date())
        await publish(bootstrap, originals)  # all of them again, at new offsets
        await wait_consumed(stack_env, app.state.settings.usage_group_id)
        for tenant_id in tenants:
            assert await counts_of(stack_env, tenant_id) == first[tenant_id]
    async with usage_app(stack_env, start_at=mark) as (app, _):  # another group, from the same start
        await wait_consumed(stack_env, app.state.settings.usage_group_id)
        for tenant_id in tenants:
            assert await counts_of(stack_env, tenant_id) == first[tenant_id]


async def test_a_tallied_batch_counts_as_the_same_batch_decided_event_by_event(
    stack_env: dict[str, str],
) -> None:
    """The consumer's two ways of applying a batch, on the real database: as tallied while parsed
    (every event fresh: sums per key, one mark per counter) and event by event (what a batch in
    which something may have been counted before goes through). Two sets of tenants get the same
    events, one set each way: their counts are equal. The tallied batch delivered again at later
    offsets finds itself not fresh, goes event by event, and counts nothing more."""
    now = datetime.now(UTC)
    tenants = await new_tenants(stack_env, 6)
    counter = uuid.uuid4()
    values: dict[str, list[bytes]] = {}
    for way, chosen in (("tally", tenants[:3]), ("exact", tenants[3:])):
        events = mixed_events(chosen, now)  # the same pattern for both sets (a seeded generator)
        for n, tenant_id in enumerate(chosen):
            start = now - timedelta(hours=n)
            events += [
                requests_counted(tenant_id, 10 + s, start, counter=counter, sequence=s) for s in (1, 2, 3)
            ]
        values[way] = [json.dumps(event).encode() for event in events]
    db = PlatformDB(role_url(stack_env, "usage"), application_name="usage:test")
    service = UsageService(db, triggers=Triggers(), clock=utc_now)
    group_id = f"usage-test-{uuid.uuid4().hex[:12]}"
    try:
        tally = Tally()
        assert tally.add_values(values["tally"]) == []
        spans = {("test.tally", 0): (0, len(values["tally"]) - 1)}
        exact = {("test.tally", 0): [(i, parse(v)) for i, v in enumerate(values["tally"])]}
        tallied = await service.apply_batch(group_id, PreparedBatch(spans, tally, lambda: exact))
        one_by_one = {("test.exact", 0): [(i, parse(v)) for i, v in enumerate(values["exact"])]}
        decided = await service.apply_batch(group_id, PreparedBatch.of_exact(one_by_one))
        assert (tallied.tallied, decided.tallied) == (True, False)
        assert tallied.applied == decided.applied == len(values["tally"])
        assert tallied.counted == decided.counted
        counts = {t: await counts_of(stack_env, t) for t in tenants}
        for a, b in zip(tenants[:3], tenants[3:], strict=True):
            assert counts[a] == counts[b]
            assert counts[a].product_count == 5
            assert sum(r for r, _, _ in counts[a].daily.values()) > 0

        again = Tally()
        again.add_values(values["tally"])
        later = {("test.tally", 1): (0, len(values["tally"]) - 1)}
        exact_later = {("test.tally", 1): [(i, parse(v)) for i, v in enumerate(values["tally"])]}
        replayed = await service.apply_batch(group_id, PreparedBatch(later, again, lambda: exact_later))
        assert not replayed.tallied
        assert (replayed.applied, replayed.duplicates) == (0, len(values["tally"]))
        for tenant_id in tenants[:3]:
            assert await counts_of(stack_env, tenant_id) == counts[tenant_id]
    finally:
        await db.close()


def _sample(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_group_starts_at_its_stored_offsets_without_reading_what_lies_before(
    stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka ends a rebalance (getmany returns records again) before it awaits the listener that
    seeks to the offsets stored with the counts, and meanwhile positions the partitions at the group's
    reset, the beginning. Unless they wait paused, the first batches read older records only to drop
    them as below the stored offset, and the batches after go event by event. The stored offsets are
    read slowly here (a database slow to answer, a pool opening its first connection), as they were
    in the benchmark before the fix: every start read 2,000 old records."""
    read_offsets = UsageService.stored_offsets

    async def slowly(self: UsageService, group_id: str, partitions: Any) -> Any:
        await asyncio.sleep(1.0)
        return await read_offsets(self, group_id, partitions)

    monkeypatch.setattr(UsageService, "stored_offsets", slowly)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    now = datetime.now(UTC)
    # Records before the stored offsets on every partition (the topics may be fresh).
    await publish(bootstrap, mixed_events(await new_tenants(stack_env, 12), now))
    mark = await end_offsets(bootstrap)
    tenants = await new_tenants(stack_env, 3)
    events = mixed_events(tenants, now)
    await publish(bootstrap, events)
    below = _sample("usage_events_skipped_total", {"reason": "below_offset"})
    exact = _sample("usage_batches_total", {"path": "exact"})
    async with usage_app(stack_env, start_at=mark) as (app, _):
        await wait_consumed(stack_env, app.state.settings.usage_group_id)
        for tenant_id in tenants:
            assert await counts_of(stack_env, tenant_id) == expected_counts(events, tenant_id, now.date())
    assert _sample("usage_events_skipped_total", {"reason": "below_offset"}) == below
    assert _sample("usage_batches_total", {"path": "exact"}) == exact
