"""tenant.threshold_crossed exactly once per tenant, metric and period: a replay from the start emits
nothing again, a level metric that fell back below may cross again, a new month may cross again,
plan and compliance cross on each change to them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from events import topics

from tests.integration.usage.conftest import (
    FakeClock,
    counts_of,
    crossings_of,
    end_offsets,
    envelope,
    new_tenants,
    product_event,
    publish,
    requests_counted,
    usage_app,
    wait_consumed,
    wait_until,
)
from tests.support.kafka import Seen, watch

# Long enough for a committed outbox row to be relayed (the relay is woken by the commit itself).
RELAY_SETTLE_SECONDS = 1.5


def crossed(seen: Seen, tenant_id: uuid.UUID, metric: str | None = None) -> list[dict[str, Any]]:
    return [
        m
        for m in seen.messages
        if m.get("tenant_id") == str(tenant_id)
        and m.get("event_type") == "tenant.threshold_crossed"
        and (metric is None or m["data"]["metric"] == metric)
    ]


async def test_products_cross_once_replay_emits_none_and_falling_below_rearms(
    stack_env: dict[str, str],
) -> None:
    (tenant_id,) = await new_tenants(stack_env, 1)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    async with watch(bootstrap, topics.THRESHOLDS) as seen:
        async with usage_app(stack_env, trigger_products=5, start_at=await end_offsets(bootstrap)) as (
            app,
            _,
        ):
            group = app.state.settings.usage_group_id
            await publish(bootstrap, [product_event("product.created", tenant_id) for _ in range(4)])
            await wait_consumed(stack_env, group)
            assert crossed(seen, tenant_id) == []
            await publish(bootstrap, [product_event("product.created", tenant_id) for _ in range(3)])
            await seen.wait_for(lambda m: m in crossed(seen, tenant_id), count=1)
        first = crossed(seen, tenant_id)
        assert [
            (m["data"]["metric"], m["data"]["period"], m["data"]["value"], m["data"]["threshold"])
            for m in first
        ] == [("products", "episode-1", 7, 5)]
        assert first[0]["event_id"] == str((await crossings_of(stack_env, tenant_id))[0]["event_id"])

        # Restarted with a group of its own: the topics are read again from the start.
        async with usage_app(stack_env, trigger_products=5) as (app, _):
            await wait_consumed(stack_env, app.state.settings.usage_group_id)
            await asyncio.sleep(RELAY_SETTLE_SECONDS)
            assert crossed(seen, tenant_id) == first
            assert len(await crossings_of(stack_env, tenant_id)) == 1

            # Below (7 - 3 = 4 < 5), then across again: a second episode, a second event.
            await publish(bootstrap, [product_event("product.deleted", tenant_id) for _ in range(3)])
            await wait_consumed(stack_env, app.state.settings.usage_group_id)
            rows = await crossings_of(stack_env, tenant_id)
            assert rows[0]["resolved_at"] is not None
            await publish(bootstrap, [product_event("product.created", tenant_id)])
            await seen.wait_for(lambda m: m in crossed(seen, tenant_id), count=2)
            await asyncio.sleep(RELAY_SETTLE_SECONDS)
    events = crossed(seen, tenant_id)
    assert [m["data"]["period"] for m in events] == ["episode-1", "episode-2"]
    assert len({m["event_id"] for m in events}) == 2
    assert (await counts_of(stack_env, tenant_id)).product_count == 5


async def test_month_rollover_resets_the_months_requests_and_may_cross_again(
    stack_env: dict[str, str],
) -> None:
    (tenant_id,) = await new_tenants(stack_env, 1)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    end_of_november = datetime(2026, 11, 30, 23, 59, 50, tzinfo=UTC)
    clock = FakeClock(end_of_november)
    mark = await end_offsets(bootstrap)  # its group starts here: no replay of the topics' history
    async with (
        watch(bootstrap, topics.THRESHOLDS) as seen,
        usage_app(stack_env, clock=clock, trigger_requests_per_month=100, start_at=mark) as (app, _),
    ):
        group = app.state.settings.usage_group_id
        await publish(
            bootstrap,
            [requests_counted(tenant_id, 60, end_of_november + timedelta(seconds=i)) for i in range(2)],
        )
        await seen.wait_for(lambda m: m in crossed(seen, tenant_id), count=1)
        assert (await counts_of(stack_env, tenant_id)).monthly_requests == 120

        clock.now = datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC)

        async def rolled() -> bool:
            return (await counts_of(stack_env, tenant_id)).monthly_requests == 0

        await wait_until(rolled, "monthly_requests reset by the rollover")
        december = datetime(2026, 12, 1, 0, 0, 10, tzinfo=UTC)
        late_november = requests_counted(tenant_id, 5, end_of_november + timedelta(seconds=5))
        await publish(
            bootstrap, [requests_counted(tenant_id, 50, december + timedelta(seconds=i)) for i in range(2)]
        )
        await publish(bootstrap, [late_november])
        await seen.wait_for(lambda m: m in crossed(seen, tenant_id), count=2)
        await wait_consumed(stack_env, group)
        await asyncio.sleep(RELAY_SETTLE_SECONDS)
        counts = await counts_of(stack_env, tenant_id)
    assert counts.monthly_requests == 100
    assert counts.monthly == {datetime(2026, 11, 1).date(): 125, datetime(2026, 12, 1).date(): 100}
    events = crossed(seen, tenant_id)
    assert [(m["data"]["metric"], m["data"]["period"]) for m in events] == [
        ("requests_per_month", "2026-11"),
        ("requests_per_month", "2026-12"),
    ]


def _tenant_updated(tenant_id: uuid.UUID, plan: str, compliance: bool) -> dict[str, Any]:
    return envelope(
        "tenant.updated",
        tenant_id,
        {"tenant_id": str(tenant_id), "plan": plan, "compliance_isolation": compliance},
    )


async def test_plan_and_compliance_cross_on_each_change(stack_env: dict[str, str]) -> None:
    (tenant_id,) = await new_tenants(stack_env, 1)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    changes = [
        _tenant_updated(tenant_id, "basic", False),
        envelope(
            "tenant.plan_changed",
            tenant_id,
            {"tenant_id": str(tenant_id), "old_plan": "basic", "new_plan": "enterprise"},
        ),
        _tenant_updated(tenant_id, "enterprise", False),  # no change: nothing
        _tenant_updated(tenant_id, "enterprise", True),
        _tenant_updated(tenant_id, "basic", True),
        _tenant_updated(tenant_id, "enterprise", True),
    ]
    async with (
        watch(bootstrap, topics.THRESHOLDS) as seen,
        usage_app(stack_env, start_at=await end_offsets(bootstrap)) as (app, _),
    ):
        await publish(bootstrap, changes)
        await wait_consumed(stack_env, app.state.settings.usage_group_id)
        await seen.wait_for(lambda m: m in crossed(seen, tenant_id), count=3)
        await publish(bootstrap, changes)  # the same events again: nothing new
        await wait_consumed(stack_env, app.state.settings.usage_group_id)
        await asyncio.sleep(RELAY_SETTLE_SECONDS)
    assert sorted((m["data"]["metric"], m["data"]["period"]) for m in crossed(seen, tenant_id)) == [
        ("compliance_isolation", "episode-1"),
        ("plan_enterprise", "episode-1"),
        ("plan_enterprise", "episode-2"),
    ]


async def test_events_counted_by_another_group_are_judged_with_this_groups_triggers(
    stack_env: dict[str, str],
) -> None:
    """A group that finds the events already counted (by a group with other triggers: the stack's own
    usage service, say) still judges the counters they touched."""
    (tenant_id,) = await new_tenants(stack_env, 1)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    mark = await end_offsets(bootstrap)
    await publish(bootstrap, [product_event("product.created", tenant_id) for _ in range(6)])
    await publish(bootstrap, [requests_counted(tenant_id, 40, datetime.now(UTC)) for _ in range(3)])
    async with watch(bootstrap, topics.THRESHOLDS) as seen:
        async with usage_app(stack_env, start_at=mark) as (app, _):  # default triggers: nothing
            await wait_consumed(stack_env, app.state.settings.usage_group_id)
        assert await crossings_of(stack_env, tenant_id) == []
        async with usage_app(
            stack_env, start_at=mark, trigger_products=5, trigger_requests_per_month=100
        ) as (
            app,
            _,
        ):
            await seen.wait_for(lambda m: m in crossed(seen, tenant_id), count=2)
            await wait_consumed(stack_env, app.state.settings.usage_group_id)
            await asyncio.sleep(RELAY_SETTLE_SECONDS)
    assert sorted(m["data"]["metric"] for m in crossed(seen, tenant_id)) == ["products", "requests_per_month"]
    assert (await counts_of(stack_env, tenant_id)).product_count == 6
