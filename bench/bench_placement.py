"""The placement advisor at fleet scale: `GET /v1/placement/plan`'s work (the facts statement and the
rules) for 10,000 tenants with 60 days of daily metrics each.

- `migrator.placement_plan_10k` (ms, median of 5; ratio = ours / baseline): `repository.placement_facts`
  plus `placement.plan` over 10,000 tenants (1,000 dedicated), 600,000 daily rows, 1,000 crossings and
  1,000 completed moves. Baseline, same transaction: reading the raw input rows the plan needs at the
  least (the tenants' columns and the lookback's daily rows, no aggregation) over the same connection.

Everything is inserted in one transaction of the schema owner and rolled back: nothing of it is ever
visible to the stack's services or other tests. `PLACEMENT_BENCH_TENANTS` (default 10000) scales it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from migrator import placement, repository
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from tenantschema.urls import asyncpg_url

from bench import Measure

BENCHMARKS = ("migrator.placement_plan_10k",)
DAYS = 60
ROUNDS = 5


def _say(message: str) -> None:
    print(f"bench: placement: {message}", file=sys.stderr, flush=True)


_SEED = [
    """INSERT INTO tenants (id, name, subdomain, plan, tenant_type, database_name, product_count,
                           monthly_requests, compliance_isolation)
       SELECT gen_random_uuid(), 'bench ' || i, 'bench-placement-' || i,
              (ARRAY['basic', 'professional', 'enterprise'])[1 + i % 3],
              CASE WHEN i % 10 = 0 THEN 'dedicated' ELSE 'shared' END,
              CASE WHEN i % 10 = 0 THEN 'tenant_bench_' || i END,
              (i * 37) % 15000, (i * 91) % 150000, i % 97 = 0
       FROM generate_series(1, :n) AS i""",
    """INSERT INTO tenant_usage_metrics (tenant_id, metric_date, requests_count, storage_used_gb)
       SELECT t.id, CAST(:today AS date) - d, (hashtext(t.id::text || d) & 4095), ((d % 7) * 0.5)
       FROM tenants AS t, generate_series(0, :days - 1) AS d
       WHERE t.subdomain LIKE 'bench-placement-%'""",
    """INSERT INTO usage_thresholds (tenant_id, metric, period, value, threshold, event_id, crossed_at,
                                    resolved_at)
       SELECT id, 'products', 'episode-1', 10000, 10000, gen_random_uuid(), now() - interval '20 days',
              now() - interval '10 days'
       FROM tenants WHERE subdomain LIKE 'bench-placement-%' AND product_count % 10 = 1""",
    """INSERT INTO tenant_migrations (tenant_id, migration_type, from_state, to_state, status, phase,
                                     completed_at)
       SELECT id, 'shared_to_dedicated', '{}', '{}', 'completed', 'done', now() - interval '40 days'
       FROM tenants WHERE subdomain LIKE 'bench-placement-%' AND tenant_type = 'dedicated'""",
]


async def _median_ms(action: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _measure(connection: AsyncConnection, tenants: int) -> Measure:
    today = datetime.now(UTC).date()
    policy = placement.DemotePolicy()
    started = time.perf_counter()
    for statement in _SEED:
        await connection.execute(text(statement), {"n": tenants, "today": today, "days": DAYS})
    await connection.execute(
        text("ANALYZE tenants, tenant_usage_metrics, usage_thresholds, tenant_migrations")
    )
    _say(f"seeded {tenants} tenants x {DAYS} days in {time.perf_counter() - started:.1f} s")

    async def ours() -> placement.PlacementPlan:
        rows = await repository.placement_facts(connection, today=today, lookback_days=policy.after_days)
        facts = [placement.TenantFacts(**row._mapping) for row in rows]
        return placement.plan(
            facts, triggers=placement.Triggers(), policy=policy, costs=placement.CostModel(), today=today
        )

    history_start = today - timedelta(days=policy.after_days - 1 + 29)

    async def raw() -> None:
        await connection.execute(
            text(
                "SELECT id, plan, status, tenant_type, compliance_isolation, product_count, monthly_requests "
                "FROM tenants WHERE status <> 'deleted'"
            )
        )
        await connection.execute(
            text(
                "SELECT tenant_id, metric_date, requests_count, storage_used_gb FROM tenant_usage_metrics "
                "WHERE metric_date BETWEEN :start AND :today"
            ),
            {"start": history_start, "today": today},
        )

    plan = await ours()
    if os.environ.get("PLACEMENT_BENCH_EXPLAIN"):
        lookback_start = today - timedelta(days=policy.after_days - 1)
        explained = await connection.execute(
            text("EXPLAIN (ANALYZE, BUFFERS) " + str(repository._PLACEMENT_FACTS.text)),
            {"ids": None, "today": today, "lookback_start": lookback_start, "history_start": history_start},
        )
        _say("\n".join(row[0] for row in explained))
        sql = await _median_ms(
            lambda: repository.placement_facts(connection, today=today, lookback_days=policy.after_days)
        )
        _say(f"the facts statement alone: {sql:.0f} ms")
    _say(
        f"plan of {plan.totals.tenants} tenants: {plan.totals.promotions} promotions, "
        f"{plan.totals.demotions} demotions"
    )
    value = await _median_ms(ours)
    baseline = await _median_ms(raw)
    _say(f"plan {value:.0f} ms, raw read of its inputs {baseline:.0f} ms")
    return Measure("migrator.placement_plan_10k", round(value, 1), "ms", round(baseline, 1))


async def run(selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    tenants = int(os.environ.get("PLACEMENT_BENCH_TENANTS", "10000"))
    engine = create_async_engine(asyncpg_url(env["OWNER_DATABASE_URL"]))
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            try:
                return [await _measure(connection, tenants)]
            finally:
                await transaction.rollback()  # nothing of the fleet above is ever committed
    finally:
        await engine.dispose()
