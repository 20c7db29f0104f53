"""What the migrator's API does: each use case is one platform-database unit of work on
`tenant_migrations`, recording its events in the outbox in the same transaction. The moves themselves
run in `runner.Runner` (woken by these commits).

`request_migration` is the one entry point for anything that wants a tenant moved: the API, and the
automatic placement (usage thresholds, the placement plan) in-process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from events import topics
from events.outbox import record
from servicekit.db import UniqueViolation
from servicekit.errors import Conflict, NotFound
from servicekit.pagination import Keyset, Page, Timestamp, Uuid
from servicekit.platform import PlatformDB
from sqlalchemy import Row, func
from sqlalchemy.ext.asyncio import AsyncConnection

from migrator import domain, repository
from migrator.domain import Direction

NEWEST_MIGRATIONS: Keyset[Row[Any]] = Keyset(
    "migrations", (Timestamp(), Uuid()), lambda row: (row.started_at, row.id)
)


def _state(tenant: Row[Any]) -> dict[str, Any]:
    return {
        "tenant_type": tenant.tenant_type,
        "database_name": tenant.database_name,
        "placement_epoch": tenant.placement_epoch,
    }


async def queue_migration(
    connection: AsyncConnection,
    tenant_id: uuid.UUID,
    *,
    direction: Direction | None = None,
    reason: str | None = None,
    trigger: str | None = None,
    priority: int = 0,
    not_before: datetime | None = None,
    attempt: int = 1,
) -> Row[Any]:
    """A pending migration and its migration.started event, on the caller's transaction (a placement
    decision is recorded in the same one)."""
    tenant = await repository.get_tenant(connection, tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} does not exist", field="tenant_id")
    domain.check_movable(tenant.status)
    chosen = domain.direction_for(tenant.tenant_type, direction)
    target = domain.target_variant(chosen)
    try:
        row = await repository.insert_migration(
            connection,
            {
                "tenant_id": tenant_id,
                "migration_type": domain.MIGRATION_TYPES[chosen],
                "from_state": _state(tenant),
                "to_state": {"tenant_type": target},
                "status": "pending",
                "phase": "provision",
                "reason": reason,
                "trigger": trigger,
                "priority": priority,
                "not_before": not_before,
                "attempt": attempt,
            },
        )
    except UniqueViolation:
        raise Conflict(f"tenant {tenant_id} already has an active migration", field="tenant_id") from None
    await record(connection, topics.MIGRATIONS, domain.migration_event("migration.started", row))
    return row


class MigratorService:
    def __init__(self, db: PlatformDB) -> None:
        self._db = db
        self._wake: Callable[[], None] = lambda: None

    def on_request(self, wake: Callable[[], None]) -> None:
        """Called after a request or cancel committed (the runner's wake-up)."""
        self._wake = wake

    async def request_migration(
        self,
        tenant_id: uuid.UUID,
        *,
        direction: Direction | None = None,
        reason: str | None = None,
        trigger: str | None = None,
        priority: int = 0,
    ) -> Row[Any]:
        """Ask for a move; at most one active per tenant (the database refuses a second: Conflict).
        With a `trigger` (the automatic placement, the advisor's `--apply`) the move is queued for the
        scheduler (concurrency limit, priority, allowed hours); without, it starts at once."""
        async with self._db.unit_of_work() as uow:
            row = await queue_migration(
                uow.connection,
                tenant_id,
                direction=direction,
                reason=reason,
                trigger=trigger,
                priority=priority,
            )
            await uow.commit()
        self._wake()
        return row

    async def get(self, migration_id: uuid.UUID) -> Row[Any]:
        async with self._db.unit_of_work(readonly=True) as uow:
            row = await repository.get_migration(uow.connection, migration_id)
        if row is None:
            raise NotFound(f"migration {migration_id} does not exist")
        return row

    async def find(
        self, *, tenant_id: uuid.UUID | None, status: str | None, cursor: str | None, limit: int
    ) -> Page[Row[Any]]:
        after = NEWEST_MIGRATIONS.decode(cursor)
        async with self._db.unit_of_work(readonly=True) as uow:
            rows = await repository.list_migrations(
                uow.connection, tenant_id=tenant_id, status=status, after=after, limit=limit + 1
            )
        return Page(*NEWEST_MIGRATIONS.page(rows, limit))

    async def cancel(self, migration_id: uuid.UUID) -> Row[Any]:
        """Before the cutover only. A pending move (nothing made yet) is cancelled at once; a running
        one is marked, and its runner removes what it made, then records it cancelled."""
        async with self._db.unit_of_work() as uow:
            row = await repository.get_migration(uow.connection, migration_id, for_update=True)
            if row is None:
                raise NotFound(f"migration {migration_id} does not exist")
            if row.status == "pending":
                row = await repository.update_migration(
                    uow.connection, migration_id, {"status": "cancelled", "completed_at": func.now()}
                )
                await record(
                    uow.connection, topics.MIGRATIONS, domain.migration_event("migration.cancelled", row)
                )
            elif row.status == "in_progress" and row.phase in domain.CANCELLABLE_PHASES:
                marked = await repository.request_cancel(uow.connection, migration_id)
                assert marked is not None  # the row is locked: its phase cannot have moved on
                row = marked
            elif row.status == "cancelled":
                return row
            else:
                raise Conflict(
                    f"migration {migration_id} is {row.status} in phase {row.phase}: "
                    "only a migration before its cutover can be cancelled",
                    current_status=row.status,
                    phase=row.phase,
                )
            await uow.commit()
        self._wake()
        return row

    async def cleanup_now(self, migration_id: uuid.UUID) -> Row[Any]:
        """Delete the source now instead of after the directory TTL (on-call's `migrations cleanup`)."""
        async with self._db.unit_of_work() as uow:
            row = await repository.get_migration(uow.connection, migration_id, for_update=True)
            if row is None:
                raise NotFound(f"migration {migration_id} does not exist")
            if row.phase != "cleanup" or row.status != "in_progress":
                raise Conflict(
                    f"migration {migration_id} is not waiting for its cleanup (phase {row.phase})",
                    current_status=row.status,
                    phase=row.phase,
                )
            row = await repository.update_migration(
                uow.connection, migration_id, {}, progress={"cleanup_now": True}
            )
            await uow.commit()
        self._wake()
        return row
