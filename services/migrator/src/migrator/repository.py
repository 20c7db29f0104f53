"""The migrator's SQL on the platform database: `tenant_migrations` and the directory columns of
`tenants`, on a unit of work's connection. A second active migration of a tenant is refused by the
partial unique index `idx_migrations_one_active_per_tenant` (servicekit.db's UniqueViolation)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, cast

from servicekit.db import constraint_errors
from sqlalchemy import Row, Select, func, insert, select, text, tuple_, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from tenantschema.platform import tenant_migrations, tenants

_UNIQUE = {"idx_migrations_one_active_per_tenant": "tenant_id"}
_ACTIVE = ("pending", "in_progress")
_DIRECTORY = ("id", "status", "tenant_type", "database_name", "placement_epoch")


async def get_tenant(connection: AsyncConnection, tenant_id: uuid.UUID) -> Row[Any] | None:
    query = select(
        tenants.c.id,
        tenants.c.status,
        tenants.c.tenant_type,
        tenants.c.database_name,
        tenants.c.placement_epoch,
    ).where(tenants.c.id == tenant_id)
    # Only the columns migrator_service may read (column grants): a Row of five, typed as any row.
    return cast("Row[Any] | None", (await connection.execute(query)).first())


async def insert_migration(connection: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    with constraint_errors(_UNIQUE):
        statement = insert(tenant_migrations).values(**values).returning(tenant_migrations)
        row: Row[Any] = (await connection.execute(statement)).one()
    return row


async def get_migration(
    connection: AsyncConnection, migration_id: uuid.UUID, *, for_update: bool = False
) -> Row[Any] | None:
    query = select(tenant_migrations).where(tenant_migrations.c.id == migration_id)
    if for_update:
        query = query.with_for_update()
    return (await connection.execute(query)).first()


async def list_migrations(
    connection: AsyncConnection,
    *,
    tenant_id: uuid.UUID | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Row[Any]]:
    """Newest first: keyset on (started_at DESC, id DESC)."""
    query = select(tenant_migrations)
    if tenant_id is not None:
        query = query.where(tenant_migrations.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(tenant_migrations.c.status == status)
    if after is not None:
        query = query.where(tuple_(tenant_migrations.c.started_at, tenant_migrations.c.id) < tuple_(*after))
    query = query.order_by(tenant_migrations.c.started_at.desc(), tenant_migrations.c.id.desc()).limit(limit)
    return list((await connection.execute(query)).all())


async def active_migration_ids(connection: AsyncConnection) -> list[uuid.UUID]:
    query = (
        select(tenant_migrations.c.id)
        .where(tenant_migrations.c.status.in_(_ACTIVE))
        .order_by(tenant_migrations.c.started_at)
    )
    return list((await connection.execute(query)).scalars())


async def update_migration(
    connection: AsyncConnection,
    migration_id: uuid.UUID,
    values: dict[str, Any],
    *,
    progress: dict[str, Any] | None = None,
) -> Row[Any]:
    """Set columns; `progress` is merged into the stored object (top-level keys replaced)."""
    changes: dict[str, Any] = {**values, "updated_at": func.now()}
    if progress is not None:
        changes["progress"] = tenant_migrations.c.progress.op("||")(type_coerce(progress, JSONB))
    statement = (
        update(tenant_migrations)
        .where(tenant_migrations.c.id == migration_id)
        .values(**changes)
        .returning(tenant_migrations)
    )
    row: Row[Any] = (await connection.execute(statement)).one()
    return row


async def request_cancel(connection: AsyncConnection, migration_id: uuid.UUID) -> Row[Any] | None:
    """Mark a running migration for cancellation, only while it is before its cutover (the runner's
    step into the cutover takes the same row lock and checks the mark)."""
    statement = text(
        "UPDATE tenant_migrations SET progress = progress || '{\"cancel_requested\": true}'::jsonb, "
        "updated_at = now() WHERE id = :id AND status = 'in_progress' "
        "AND phase IN ('provision', 'capture', 'copy', 'catch_up', 'verify') RETURNING *"
    )
    return (await connection.execute(statement, {"id": migration_id})).first()


def ended_to_dedicated_without_placement_query() -> Select[Any]:
    """Moves to a dedicated database that failed or were cancelled while the tenant is not placed
    there (their target, if it still exists, is an orphan)."""
    return (
        select(tenant_migrations.c.id, tenant_migrations.c.tenant_id)
        .join(tenants, tenants.c.id == tenant_migrations.c.tenant_id)
        .where(
            tenant_migrations.c.migration_type == "shared_to_dedicated",
            tenant_migrations.c.status.in_(("failed", "cancelled")),
            tenants.c.tenant_type == "shared",
        )
    )


# The placement advisor's facts, every tenant in one statement (bounded: only the daily rows of the
# last `days` + 29 days are read, through idx_usage_metrics_tenant_date). Each rolling 30-day request
# total is a window over the tenant's daily rows; the total ending on the first day of the lookback
# (which may have no row) is summed apart, since a day without a row cannot exceed the last row day
# before it. A monthly crossing keeps the tenant over its trigger until the month ends (UTC).
_PLACEMENT_FACTS = text(
    """
    WITH scope AS (
        SELECT id, plan, status, tenant_type, compliance_isolation, product_count, monthly_requests
        FROM tenants
        WHERE status <> 'deleted' AND (CAST(:ids AS uuid[]) IS NULL OR id = ANY(CAST(:ids AS uuid[])))
    ),
    daily AS (
        SELECT m.tenant_id, m.metric_date, m.requests_count, m.storage_used_gb,
               sum(m.requests_count) OVER (
                   PARTITION BY m.tenant_id ORDER BY m.metric_date
                   RANGE BETWEEN INTERVAL '29 days' PRECEDING AND CURRENT ROW
               ) AS requests_30d
        FROM scope AS s
        JOIN tenant_usage_metrics AS m
          ON m.tenant_id = s.id AND m.metric_date BETWEEN :history_start AND :today
    ),
    usage AS (
        SELECT tenant_id,
               GREATEST(
                   coalesce(max(requests_30d) FILTER (WHERE metric_date >= :lookback_start), 0),
                   coalesce(sum(requests_count) FILTER (WHERE metric_date <= :lookback_start), 0)
               ) AS peak_requests_30d,
               coalesce(max(storage_used_gb) FILTER (WHERE metric_date >= :lookback_start), 0)
                   AS peak_storage_gb,
               coalesce(
                   (array_agg(storage_used_gb ORDER BY metric_date DESC)
                        FILTER (WHERE storage_used_gb > 0))[1],
                   0
               ) AS storage_gb
        FROM daily GROUP BY tenant_id
    ),
    crossed AS (
        SELECT u.tenant_id,
               max(CASE
                   WHEN u.metric = 'requests_per_month' THEN least(
                       :today,
                       (date_trunc('month', u.crossed_at AT TIME ZONE 'UTC') + INTERVAL '1 month'
                        - INTERVAL '1 day')::date)
                   WHEN u.resolved_at IS NULL THEN :today
                   ELSE (u.resolved_at AT TIME ZONE 'UTC')::date
               END) AS last_over_on
        FROM scope AS s JOIN usage_thresholds AS u ON u.tenant_id = s.id
        WHERE u.metric IN ('products', 'requests_per_month', 'storage_gb')
        GROUP BY u.tenant_id
    ),
    moves AS (
        SELECT g.tenant_id,
               -- Arrived: a completed move, or one flipped and waiting for its cleanup.
               max((coalesce(g.completed_at, g.updated_at) AT TIME ZONE 'UTC')::date) FILTER (
                   WHERE g.status = 'completed' OR (g.status = 'in_progress' AND g.phase = 'cleanup')
               ) AS placed_on,
               (array_agg(g.id) FILTER (WHERE g.status IN ('pending', 'in_progress')))[1]
                   AS active_migration_id
        FROM scope AS s JOIN tenant_migrations AS g ON g.tenant_id = s.id
        GROUP BY g.tenant_id
    )
    SELECT s.id AS tenant_id, s.plan, s.status, s.tenant_type AS placement, s.compliance_isolation,
           s.product_count, s.monthly_requests,
           coalesce(usage.storage_gb, 0)::float8 AS storage_gb,
           coalesce(usage.peak_requests_30d, 0)::bigint AS peak_requests_30d,
           coalesce(usage.peak_storage_gb, 0)::float8 AS peak_storage_gb,
           CASE WHEN crossed.last_over_on IS NULL THEN moves.placed_on
                WHEN moves.placed_on IS NULL THEN crossed.last_over_on
                ELSE GREATEST(crossed.last_over_on, moves.placed_on) END AS last_active_on,
           moves.active_migration_id
    FROM scope AS s
    LEFT JOIN usage ON usage.tenant_id = s.id
    LEFT JOIN crossed ON crossed.tenant_id = s.id
    LEFT JOIN moves ON moves.tenant_id = s.id
    ORDER BY s.id
    """
)


async def placement_facts(
    connection: AsyncConnection,
    *,
    today: date,
    lookback_days: int,
    tenant_ids: Sequence[uuid.UUID] | None = None,
) -> list[Row[Any]]:
    """Every tenant not deleted (or only `tenant_ids`) with what the advisor reads (placement.TenantFacts)."""
    lookback_start = today - timedelta(days=lookback_days - 1)
    params = {
        "ids": list(tenant_ids) if tenant_ids is not None else None,
        "today": today,
        "lookback_start": lookback_start,
        "history_start": lookback_start - timedelta(days=29),
    }
    # The planner's cost estimate of the window over the daily rows crosses the JIT threshold, and
    # compiling it took ~250 ms of a ~2.5 s plan of 10,000 tenants (bench_placement): more than it saved.
    await connection.execute(text("SET LOCAL jit = off"))
    return list((await connection.execute(_PLACEMENT_FACTS, params)).all())
