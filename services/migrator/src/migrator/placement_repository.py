"""The automatic placement's SQL on the platform database, on a unit of work's connection:
`placement_decisions` (insert, find) and the scheduler's view of `tenant_migrations`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, func, select, text, tuple_, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from tenantschema.placement import placement_decisions
from tenantschema.platform import tenant_migrations

from migrator.triggers import Queued

# Decisions on one tenant are taken one at a time (two trigger topics are consumed concurrently).
_TENANT_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('migrator:placement:' || :tenant, 0))")
# One scheduler at a time across replicas: the count of running moves and the claim are one step.
_SCHEDULER_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('migrator:scheduler', 0))")


async def lock_tenant_decisions(connection: AsyncConnection, tenant_id: uuid.UUID) -> None:
    await connection.execute(_TENANT_LOCK, {"tenant": str(tenant_id)})


async def decision_of_event(connection: AsyncConnection, event_id: uuid.UUID) -> Row[Any] | None:
    query = select(placement_decisions).where(placement_decisions.c.event_id == event_id)
    return (await connection.execute(query)).first()


async def insert_decision(connection: AsyncConnection, values: dict[str, Any]) -> Row[Any] | None:
    """The decision, or None when its event was decided already (a concurrent duplicate)."""
    statement = (
        insert(placement_decisions)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(placement_decisions)
    )
    row: Row[Any] | None = (await connection.execute(statement)).first()
    return row


async def list_decisions(
    connection: AsyncConnection,
    *,
    tenant_id: uuid.UUID | None,
    trigger: str | None,
    outcome: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Row[Any]]:
    """Newest first: keyset on (created_at DESC, id DESC)."""
    query = select(placement_decisions)
    if tenant_id is not None:
        query = query.where(placement_decisions.c.tenant_id == tenant_id)
    if trigger is not None:
        query = query.where(placement_decisions.c.trigger == trigger)
    if outcome is not None:
        query = query.where(placement_decisions.c.outcome == outcome)
    if after is not None:
        query = query.where(
            tuple_(placement_decisions.c.created_at, placement_decisions.c.id) < tuple_(*after)
        )
    query = query.order_by(placement_decisions.c.created_at.desc(), placement_decisions.c.id.desc()).limit(
        limit
    )
    return list((await connection.execute(query)).all())


async def active_migration(connection: AsyncConnection, tenant_id: uuid.UUID) -> Row[Any] | None:
    query = select(tenant_migrations.c.id, tenant_migrations.c.trigger).where(
        tenant_migrations.c.tenant_id == tenant_id, tenant_migrations.c.status.in_(("pending", "in_progress"))
    )
    # Two columns, typed as any row (as repository.get_tenant).
    return cast("Row[Any] | None", (await connection.execute(query)).first())


async def last_completed_at(connection: AsyncConnection, tenant_id: uuid.UUID) -> datetime | None:
    query = select(func.max(tenant_migrations.c.completed_at)).where(
        tenant_migrations.c.tenant_id == tenant_id, tenant_migrations.c.status == "completed"
    )
    value: datetime | None = (await connection.execute(query)).scalar()
    return value


async def lock_scheduler(connection: AsyncConnection) -> None:
    await connection.execute(_SCHEDULER_LOCK)


async def running_moves(connection: AsyncConnection) -> int:
    """Moves that take a slot: in progress and not yet waiting for their cleanup (the delayed delete
    of the source is light, and waits out the directory TTL)."""
    query = select(func.count()).where(
        tenant_migrations.c.status == "in_progress", tenant_migrations.c.phase != "cleanup"
    )
    return int((await connection.execute(query)).scalar_one())


async def queued_moves(connection: AsyncConnection) -> list[Queued]:
    query = select(
        tenant_migrations.c.id,
        tenant_migrations.c.trigger,
        tenant_migrations.c.priority,
        tenant_migrations.c.started_at,
        tenant_migrations.c.not_before,
    ).where(tenant_migrations.c.status == "pending", tenant_migrations.c.trigger.is_not(None))
    return [
        Queued(row.id, row.trigger, row.priority, row.started_at, row.not_before)
        for row in (await connection.execute(query)).all()
    ]


async def mark_started(connection: AsyncConnection, migration_ids: list[uuid.UUID], at: float) -> None:
    """Queued moves given a slot: in progress from now on (the runner takes them up like any other)."""
    if not migration_ids:
        return
    progress = type_coerce({"scheduled_at": at, "phase_started_at": at}, JSONB)
    statement = (
        update(tenant_migrations)
        .where(tenant_migrations.c.id.in_(migration_ids), tenant_migrations.c.status == "pending")
        .values(
            status="in_progress",
            updated_at=func.now(),
            progress=tenant_migrations.c.progress.op("||")(progress),
        )
    )
    await connection.execute(statement)


async def runnable_migration_ids(connection: AsyncConnection) -> list[uuid.UUID]:
    """What the runner runs: moves in progress, and manual requests (which start at once); queued
    automatic moves wait for the scheduler's `mark_started`."""
    query = (
        select(tenant_migrations.c.id)
        .where(
            (tenant_migrations.c.status == "in_progress")
            | ((tenant_migrations.c.status == "pending") & tenant_migrations.c.trigger.is_(None))
        )
        .order_by(tenant_migrations.c.started_at)
    )
    return list((await connection.execute(query)).scalars())
