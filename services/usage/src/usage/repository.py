"""usage's SQL on the platform database, as functions over a unit of work's connection.

Batches go in as arrays (`unnest`), one statement per table, rows in key order: a multi-row upsert
touches each key once (ON CONFLICT's rule) and two of them lock rows in the same order (no deadlock).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from usage.domain import INT32_MAX, Crossing, DayCounts, LevelState, MarkColumns, PlanLimits

Partition = tuple[str, int]

_ENSURE_OFFSETS = text(
    "INSERT INTO usage_offsets (group_id, topic, partition, next_offset) "
    "SELECT :group_id, u.topic, u.partition, -1 "
    "FROM unnest(CAST(:topics AS text[]), CAST(:partitions AS int[])) AS u(topic, partition) "
    "ORDER BY 2, 3 ON CONFLICT DO NOTHING"
)
_LOCK_OFFSETS = text(
    "SELECT o.topic, o.partition, o.next_offset FROM usage_offsets AS o "
    "JOIN unnest(CAST(:topics AS text[]), CAST(:partitions AS int[])) AS u(topic, partition) "
    "ON o.topic = u.topic AND o.partition = u.partition "
    "WHERE o.group_id = :group_id ORDER BY o.topic, o.partition FOR UPDATE OF o"
)
_READ_OFFSETS = text(
    "SELECT o.topic, o.partition, o.next_offset FROM usage_offsets AS o "
    "JOIN unnest(CAST(:topics AS text[]), CAST(:partitions AS int[])) AS u(topic, partition) "
    "ON o.topic = u.topic AND o.partition = u.partition WHERE o.group_id = :group_id"
)
_SAVE_OFFSETS = text(
    "UPDATE usage_offsets AS o SET next_offset = u.next_offset, updated_at = now() "
    "FROM unnest(CAST(:topics AS text[]), CAST(:partitions AS int[]), CAST(:offsets AS bigint[])) "
    "AS u(topic, partition, next_offset) "
    "WHERE o.group_id = :group_id AND o.topic = u.topic AND o.partition = u.partition"
)


def _split(partitions: Sequence[Partition]) -> dict[str, Any]:
    ordered = sorted(partitions)
    return {"topics": [t for t, _ in ordered], "partitions": [p for _, p in ordered]}


async def lock_offsets(
    connection: AsyncConnection, group_id: str, partitions: Sequence[Partition]
) -> dict[Partition, int]:
    """The next offset to apply per partition (-1: nothing applied yet), rows locked until commit:
    two consumers that both believe they hold a partition (a rebalance in flight) apply it one after
    the other, and the second sees what the first applied."""
    params = {"group_id": group_id, **_split(partitions)}
    await connection.execute(_ENSURE_OFFSETS, params)
    rows = (await connection.execute(_LOCK_OFFSETS, params)).all()
    return {(row.topic, row.partition): row.next_offset for row in rows}


async def read_offsets(
    connection: AsyncConnection, group_id: str, partitions: Sequence[Partition]
) -> dict[Partition, int]:
    params = {"group_id": group_id, **_split(partitions)}
    rows = (await connection.execute(_READ_OFFSETS, params)).all()
    return {(row.topic, row.partition): row.next_offset for row in rows if row.next_offset >= 0}


async def save_offsets(
    connection: AsyncConnection, group_id: str, next_offsets: dict[Partition, int]
) -> None:
    ordered = sorted(next_offsets.items())
    await connection.execute(
        _SAVE_OFFSETS,
        {
            "group_id": group_id,
            "topics": [t for (t, _), _ in ordered],
            "partitions": [p for (_, p), _ in ordered],
            "offsets": [o for _, o in ordered],
        },
    )


# Returns only the ids that were there before (usually none), not the thousands just inserted.
_INSERT_SEEN = text(
    "WITH inserted AS (INSERT INTO usage_seen_events (event_id) SELECT unnest(CAST(:ids AS uuid[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id) "
    "SELECT CAST(u.id AS text) AS event_id FROM unnest(CAST(:ids AS uuid[])) AS u(id) "
    "EXCEPT SELECT CAST(event_id AS text) FROM inserted"
)


async def insert_seen(connection: AsyncConnection, event_ids: Sequence[str]) -> set[str]:
    """Records the ids (canonical lowercase text); returns those already recorded before. Sorted
    first, so concurrent inserts of the same ids wait for each other in one order."""
    if not event_ids:
        return set()
    rows = (await connection.execute(_INSERT_SEEN, {"ids": sorted(set(event_ids))})).all()
    return {row.event_id for row in rows}


CounterKey = tuple[str, uuid.UUID]  # (counter id as canonical text, tenant)


async def counter_marks(connection: AsyncConnection, keys: Sequence[CounterKey]) -> dict[CounterKey, int]:
    """The highest sequence applied per (counter, tenant) of `keys` (absent: none yet). Read under
    the tenants' row locks (lock_tenants), so no other transaction moves them meanwhile."""
    if not keys:
        return {}
    rows = (
        await connection.execute(
            text(
                "SELECT CAST(m.counter_id AS text) AS counter_id, m.tenant_id, m.sequence "
                "FROM usage_counter_marks m JOIN unnest(CAST(:c AS uuid[]), CAST(:t AS uuid[])) AS k(c, t) "
                "ON m.counter_id = k.c AND m.tenant_id = k.t"
            ),
            {"c": [c for c, _ in keys], "t": [t for _, t in keys]},
        )
    ).all()
    return {(row.counter_id, row.tenant_id): row.sequence for row in rows}


async def save_counter_marks(connection: AsyncConnection, marks: Mapping[CounterKey, int]) -> None:
    if not marks:
        return
    # A UUID's integer sorts as its text and as PostgreSQL's uuid do, and costs no string per key.
    ordered = sorted(marks.items(), key=lambda item: (item[0][0], item[0][1].int))
    await connection.execute(
        text(
            "INSERT INTO usage_counter_marks (counter_id, tenant_id, sequence) "
            "SELECT * FROM unnest(CAST(:c AS uuid[]), CAST(:t AS uuid[]), CAST(:s AS bigint[])) "
            "ON CONFLICT (counter_id, tenant_id) DO UPDATE SET "
            "sequence = GREATEST(usage_counter_marks.sequence, EXCLUDED.sequence), updated_at = now()"
        ),
        {
            "c": [c for (c, _), _ in ordered],
            "t": [t for (_, t), _ in ordered],
            "s": [s for _, s in ordered],
        },
    )


# The fast path's check and its writes in one statement (one snapshot, taken under the tenants' row
# locks): the marks move and the ids are recorded only if no mark is at or above its key's first
# sequence and no id was recorded before; otherwise nothing is written and the batch goes the exact
# path. Only a boolean comes back, not a row per key.
_CLAIM_FRESH = text(
    "WITH k AS (SELECT * FROM unnest(CAST(:c AS uuid[]), CAST(:t AS uuid[]), CAST(:f AS bigint[]), "
    "CAST(:l AS bigint[])) AS k(c, t, f, l)), "
    "ids AS (SELECT unnest(CAST(:ids AS uuid[])) AS id), "
    "fresh AS (SELECT NOT EXISTS (SELECT FROM usage_counter_marks AS m JOIN k "
    "ON m.counter_id = k.c AND m.tenant_id = k.t WHERE m.sequence >= k.f) "
    "AND NOT EXISTS (SELECT FROM usage_seen_events AS s JOIN ids ON s.event_id = ids.id) AS ok), "
    "marks AS (INSERT INTO usage_counter_marks (counter_id, tenant_id, sequence) "
    "SELECT k.c, k.t, k.l FROM k WHERE (SELECT ok FROM fresh) ORDER BY 1, 2 "
    "ON CONFLICT (counter_id, tenant_id) DO UPDATE SET "
    "sequence = GREATEST(usage_counter_marks.sequence, EXCLUDED.sequence), updated_at = now()), "
    "seen AS (INSERT INTO usage_seen_events (event_id) SELECT id FROM ids WHERE (SELECT ok FROM fresh) "
    "ORDER BY 1 ON CONFLICT DO NOTHING) "
    "SELECT ok FROM fresh"
)


async def claim_fresh(connection: AsyncConnection, spans: MarkColumns, event_ids: Sequence[str]) -> bool:
    """Moves each (counter, tenant)'s mark to its last sequence and records the event ids, if the
    batch is fresh: every first sequence above its mark, no id recorded before. False: nothing
    written."""
    fresh = (
        await connection.execute(
            _CLAIM_FRESH,
            {
                "c": spans.counters,
                "t": spans.tenants,
                "f": spans.firsts,
                "l": spans.lasts,
                "ids": list(event_ids),  # distinct in a fresh batch; the statement orders them
            },
        )
    ).scalar_one()
    return bool(fresh)


async def prune_counter_marks(connection: AsyncConnection, *, older_than_days: int) -> int:
    """Marks of counters silent that long (their processes are gone: a new process is a new counter)."""
    result = await connection.execute(
        text("DELETE FROM usage_counter_marks WHERE updated_at < now() - make_interval(days => :days)"),
        {"days": older_than_days},
    )
    return result.rowcount


async def prune_seen(connection: AsyncConnection, *, older_than_days: int, limit: int) -> int:
    result = await connection.execute(
        text(
            "DELETE FROM usage_seen_events WHERE event_id IN (SELECT event_id FROM usage_seen_events "
            "WHERE seen_at < now() - make_interval(days => :days) LIMIT :limit)"
        ),
        {"days": older_than_days, "limit": limit},
    )
    return result.rowcount


_LOCK_TENANTS = text(
    "SELECT id, status, plan, product_count, monthly_requests FROM tenants "
    "WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR NO KEY UPDATE"
)


async def lock_tenants(
    connection: AsyncConnection, tenant_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Row[Any]]:
    """The tenants named (those that exist), their rows locked in id order: the counters and
    thresholds of one tenant are changed by one transaction at a time. NO KEY UPDATE, what an
    UPDATE of non-key columns takes: rows that reference the tenant (a migration requested, a
    metrics row) may still be inserted meanwhile, which FOR UPDATE would make wait for the batch."""
    if not tenant_ids:
        return {}
    rows = (await connection.execute(_LOCK_TENANTS, {"ids": sorted(tenant_ids)})).all()
    return {row.id: row for row in rows}


_UPSERT_DAILY = text(
    "INSERT INTO tenant_usage_metrics (tenant_id, metric_date, requests_count, products_count, orders_count) "
    "SELECT u.t, u.d, LEAST(u.r, :max)::int, LEAST(u.p, :max)::int, LEAST(u.o, :max)::int "
    "FROM unnest(CAST(:t AS uuid[]), CAST(:d AS date[]), CAST(:r AS bigint[]), CAST(:p AS bigint[]), "
    "CAST(:o AS bigint[])) AS u(t, d, r, p, o) "
    "ON CONFLICT (tenant_id, metric_date) DO UPDATE SET "
    "requests_count = LEAST(:max, tenant_usage_metrics.requests_count::bigint + EXCLUDED.requests_count), "
    "products_count = LEAST(:max, tenant_usage_metrics.products_count::bigint + EXCLUDED.products_count), "
    "orders_count = LEAST(:max, tenant_usage_metrics.orders_count::bigint + EXCLUDED.orders_count)"
)


async def add_daily(connection: AsyncConnection, rows: Sequence[tuple[uuid.UUID, date, DayCounts]]) -> None:
    if not rows:
        return
    await connection.execute(
        _UPSERT_DAILY,
        {
            "max": INT32_MAX,
            "t": [t for t, _, _ in rows],
            "d": [d for _, d, _ in rows],
            "r": [c.requests for _, _, c in rows],
            "p": [c.products_created for _, _, c in rows],
            "o": [c.orders for _, _, c in rows],
        },
    )


_UPSERT_MONTHLY = text(
    "INSERT INTO usage_monthly (tenant_id, month, requests_count) "
    "SELECT * FROM unnest(CAST(:t AS uuid[]), CAST(:m AS date[]), CAST(:n AS bigint[])) "
    "ON CONFLICT (tenant_id, month) DO UPDATE SET "
    "requests_count = usage_monthly.requests_count + EXCLUDED.requests_count "
    "RETURNING tenant_id, month, requests_count"
)


async def add_monthly(
    connection: AsyncConnection, rows: Sequence[tuple[uuid.UUID, date, int]]
) -> list[tuple[uuid.UUID, date, int]]:
    """Adds the requests; returns each (tenant, month)'s new total."""
    if not rows:
        return []
    params = {"t": [r[0] for r in rows], "m": [r[1] for r in rows], "n": [r[2] for r in rows]}
    result = (await connection.execute(_UPSERT_MONTHLY, params)).all()
    return [(row.tenant_id, row.month, row.requests_count) for row in result]


_UPDATE_TENANTS = text(
    "UPDATE tenants AS t SET "
    "product_count = LEAST(:max, GREATEST(0, t.product_count::bigint + u.delta)), "
    # LEAST ignores NULLs: no total this month must leave the column alone, not saturate it.
    "monthly_requests = CASE WHEN u.month_total IS NULL THEN t.monthly_requests "
    "ELSE LEAST(:max, u.month_total) END "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:deltas AS bigint[]), CAST(:totals AS bigint[])) "
    "AS u(id, delta, month_total) WHERE t.id = u.id "
    "RETURNING t.id, t.product_count"
)


async def month_totals(
    connection: AsyncConnection, keys: Sequence[tuple[uuid.UUID, date]]
) -> list[tuple[uuid.UUID, date, int]]:
    """The stored totals of these (tenant, month) keys (those that have one)."""
    if not keys:
        return []
    rows = (
        await connection.execute(
            text(
                "SELECT m.tenant_id, m.month, m.requests_count FROM usage_monthly AS m "
                "JOIN unnest(CAST(:t AS uuid[]), CAST(:m AS date[])) AS u(t, m) "
                "ON m.tenant_id = u.t AND m.month = u.m"
            ),
            {"t": [k[0] for k in keys], "m": [k[1] for k in keys]},
        )
    ).all()
    return [(row.tenant_id, row.month, row.requests_count) for row in rows]


async def update_tenant_counters(
    connection: AsyncConnection, changes: Sequence[tuple[uuid.UUID, int, int | None]]
) -> dict[uuid.UUID, int]:
    """`(tenant, product delta, this month's request total or None)` → each tenant's product_count."""
    if not changes:
        return {}
    ordered = sorted(changes, key=lambda c: c[0])
    params = {
        "max": INT32_MAX,
        "ids": [c[0] for c in ordered],
        "deltas": [c[1] for c in ordered],
        "totals": [c[2] for c in ordered],
    }
    return {row.id: row.product_count for row in (await connection.execute(_UPDATE_TENANTS, params)).all()}


async def set_product_count(connection: AsyncConnection, tenant_id: uuid.UUID, delta: int) -> int:
    row = (
        await connection.execute(
            text(
                "UPDATE tenants SET product_count = LEAST(:max, GREATEST(0, product_count::bigint + :delta)) "
                "WHERE id = :id RETURNING product_count"
            ),
            {"max": INT32_MAX, "delta": delta, "id": tenant_id},
        )
    ).one()
    count: int = row.product_count
    return count


async def roll_month(connection: AsyncConnection, month: date) -> int:
    """`tenants.monthly_requests` := the month's total (0 for tenants without one), where it differs;
    the rows locked in id order first, as the consumer's batches lock them."""
    result = await connection.execute(
        text(
            "WITH due AS (SELECT t2.id, LEAST(:max, COALESCE(m.requests_count, 0)) AS total "
            "FROM tenants AS t2 LEFT JOIN usage_monthly AS m ON m.tenant_id = t2.id AND m.month = :month "
            "WHERE t2.monthly_requests <> LEAST(:max, COALESCE(m.requests_count, 0)) "
            "ORDER BY t2.id FOR NO KEY UPDATE OF t2) "
            "UPDATE tenants AS t SET monthly_requests = due.total FROM due WHERE t.id = due.id"
        ),
        {"max": INT32_MAX, "month": month},
    )
    return result.rowcount


async def set_storage(
    connection: AsyncConnection, tenant_id: uuid.UUID, day: date, gigabytes: Decimal
) -> None:
    await connection.execute(
        text(
            "INSERT INTO tenant_usage_metrics (tenant_id, metric_date, storage_used_gb) VALUES (:t, :d, :g) "
            "ON CONFLICT (tenant_id, metric_date) DO UPDATE SET storage_used_gb = EXCLUDED.storage_used_gb"
        ),
        {"t": tenant_id, "d": day, "g": gigabytes},
    )


async def plan_limits(connection: AsyncConnection) -> dict[str, PlanLimits]:
    rows = (await connection.execute(text("SELECT name, limits FROM subscription_plans"))).all()
    return {row.name: PlanLimits.from_limits(row.limits or {}) for row in rows}


_LEVEL_STATES = text(
    "SELECT tenant_id, metric, count(*) AS episodes, bool_or(resolved_at IS NULL) AS open "
    "FROM usage_thresholds WHERE tenant_id = ANY(CAST(:ids AS uuid[])) "
    "AND metric = ANY(CAST(:metrics AS text[])) GROUP BY tenant_id, metric"
)


async def level_states(
    connection: AsyncConnection, tenant_ids: Sequence[uuid.UUID], metrics: Sequence[str]
) -> dict[tuple[uuid.UUID, str], LevelState]:
    if not tenant_ids:
        return {}
    rows = (
        await connection.execute(_LEVEL_STATES, {"ids": sorted(tenant_ids), "metrics": list(metrics)})
    ).all()
    return {(row.tenant_id, row.metric): LevelState(row.episodes, bool(row.open)) for row in rows}


_INSERT_CROSSINGS = text(
    "INSERT INTO usage_thresholds (tenant_id, metric, period, value, threshold, event_id) "
    "SELECT * FROM unnest(CAST(:t AS uuid[]), CAST(:m AS text[]), CAST(:p AS text[]), "
    "CAST(:v AS numeric[]), CAST(:h AS numeric[]), CAST(:e AS uuid[])) "
    "ON CONFLICT DO NOTHING RETURNING tenant_id, metric, period"
)


async def insert_crossings(connection: AsyncConnection, crossings: Sequence[Crossing]) -> list[Crossing]:
    """The crossings recorded now; one already recorded under its key (a replay, a racing consumer)
    is not returned, so no second event is ever made for it."""
    if not crossings:
        return []
    ordered = sorted(crossings, key=lambda c: (str(c.tenant_id), c.metric, c.period))
    params = {
        "t": [c.tenant_id for c in ordered],
        "m": [c.metric for c in ordered],
        "p": [c.period for c in ordered],
        "v": [c.value for c in ordered],
        "h": [c.threshold for c in ordered],
        "e": [c.event_id for c in ordered],
    }
    inserted = {
        (r.tenant_id, r.metric, r.period) for r in (await connection.execute(_INSERT_CROSSINGS, params))
    }
    return [c for c in ordered if (c.tenant_id, c.metric, c.period) in inserted]


async def resolve_crossings(connection: AsyncConnection, keys: Sequence[tuple[uuid.UUID, str, str]]) -> None:
    if not keys:
        return
    ordered = sorted(keys, key=lambda k: (str(k[0]), k[1], k[2]))
    await connection.execute(
        text(
            "UPDATE usage_thresholds AS x SET resolved_at = now() "
            "FROM unnest(CAST(:t AS uuid[]), CAST(:m AS text[]), CAST(:p AS text[])) AS u(t, m, p) "
            "WHERE x.tenant_id = u.t AND x.metric = u.m AND x.period = u.p AND x.resolved_at IS NULL"
        ),
        {"t": [k[0] for k in ordered], "m": [k[1] for k in ordered], "p": [k[2] for k in ordered]},
    )


# Reads for the API and the reconciler -------------------------------------------------------------


async def tenant_counters(connection: AsyncConnection, tenant_id: uuid.UUID) -> Row[Any] | None:
    return (
        await connection.execute(
            text("SELECT id, product_count, monthly_requests FROM tenants WHERE id = :id"), {"id": tenant_id}
        )
    ).first()


async def month_total(connection: AsyncConnection, tenant_id: uuid.UUID, month: date) -> int:
    row = (
        await connection.execute(
            text("SELECT requests_count FROM usage_monthly WHERE tenant_id = :t AND month = :m"),
            {"t": tenant_id, "m": month},
        )
    ).first()
    return int(row.requests_count) if row is not None else 0


async def daily_rows(
    connection: AsyncConnection, tenant_id: uuid.UUID, month: date, end: date
) -> list[Row[Any]]:
    return list(
        (
            await connection.execute(
                text(
                    "SELECT metric_date, requests_count, products_count, orders_count, storage_used_gb "
                    "FROM tenant_usage_metrics WHERE tenant_id = :t AND metric_date >= :start "
                    "AND metric_date < :end ORDER BY metric_date"
                ),
                {"t": tenant_id, "start": month, "end": end},
            )
        ).all()
    )


async def crossings_of(connection: AsyncConnection, tenant_id: uuid.UUID) -> list[Row[Any]]:
    return list(
        (
            await connection.execute(
                text(
                    "SELECT metric, period, value, threshold, event_id, crossed_at, resolved_at "
                    "FROM usage_thresholds WHERE tenant_id = :t ORDER BY crossed_at, metric, period"
                ),
                {"t": tenant_id},
            )
        ).all()
    )


_BUSIEST = {
    "requests": (
        "SELECT m.tenant_id, m.requests_count, t.product_count, "
        "(SELECT max(storage_used_gb) FROM tenant_usage_metrics AS d WHERE d.tenant_id = m.tenant_id "
        " AND d.metric_date >= :start AND d.metric_date < :end) AS storage_used_gb "
        "FROM usage_monthly AS m JOIN tenants AS t ON t.id = m.tenant_id "
        "WHERE m.month = :start AND t.status <> 'deleted' "
        "ORDER BY m.requests_count DESC, m.tenant_id LIMIT :limit"
    ),
    "products": (
        "SELECT t.id AS tenant_id, COALESCE(m.requests_count, 0) AS requests_count, t.product_count, "
        "(SELECT max(storage_used_gb) FROM tenant_usage_metrics AS d WHERE d.tenant_id = t.id "
        " AND d.metric_date >= :start AND d.metric_date < :end) AS storage_used_gb "
        "FROM tenants AS t LEFT JOIN usage_monthly AS m ON m.tenant_id = t.id AND m.month = :start "
        "WHERE t.status <> 'deleted' ORDER BY t.product_count DESC, t.id LIMIT :limit"
    ),
    "storage": (
        "SELECT s.tenant_id, COALESCE(m.requests_count, 0) AS requests_count, t.product_count, "
        "s.storage_used_gb FROM (SELECT tenant_id, max(storage_used_gb) AS storage_used_gb "
        " FROM tenant_usage_metrics WHERE metric_date >= :start AND metric_date < :end "
        " GROUP BY tenant_id) AS s JOIN tenants AS t ON t.id = s.tenant_id "
        "LEFT JOIN usage_monthly AS m ON m.tenant_id = s.tenant_id AND m.month = :start "
        "WHERE t.status <> 'deleted' ORDER BY s.storage_used_gb DESC, s.tenant_id LIMIT :limit"
    ),
}


async def busiest(
    connection: AsyncConnection, *, order_by: str, month: date, end: date, limit: int
) -> list[Row[Any]]:
    query = text(_BUSIEST[order_by])
    return list((await connection.execute(query, {"start": month, "end": end, "limit": limit})).all())


async def tenants_page(connection: AsyncConnection, after: uuid.UUID | None, limit: int) -> list[Row[Any]]:
    """Tenants not deleted, in id order from `after` (the reconciler's round)."""
    return list(
        (
            await connection.execute(
                text(
                    "SELECT id, product_count, tenant_type, database_name, plan FROM tenants "
                    "WHERE status <> 'deleted' "
                    "AND (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid)) "
                    "ORDER BY id LIMIT :limit"
                ),
                {"after": after, "limit": limit},
            )
        ).all()
    )


async def warm_up(connection: AsyncConnection, group_id: str) -> None:
    """Runs each statement of a tallied batch once with empty arrays (nothing is read or written): its
    first run on a connection pays SQLAlchemy's compilation, asyncpg's prepare and array type
    lookups, and the backend's first opening of each table and index, which would otherwise fall
    into the first batch after a start (~140 ms for one of 2,000 records)."""
    await lock_offsets(connection, group_id, [])
    await connection.execute(_LOCK_TENANTS, {"ids": []})
    await claim_fresh(connection, MarkColumns([], [], [], []), [])
    await connection.execute(_UPSERT_DAILY, {"max": INT32_MAX, "t": [], "d": [], "r": [], "p": [], "o": []})
    await connection.execute(_UPSERT_MONTHLY, {"t": [], "m": [], "n": []})
    await connection.execute(_UPDATE_TENANTS, {"max": INT32_MAX, "ids": [], "deltas": [], "totals": []})
    await connection.execute(_LEVEL_STATES, {"ids": [], "metrics": []})
    await save_offsets(connection, group_id, {})
