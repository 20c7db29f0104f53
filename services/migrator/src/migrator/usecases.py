"""What the migrator's API does: each use case is one platform-database unit of work on
`tenant_migrations`, recording its events in the outbox in the same transaction. The moves themselves
run in `runner.Runner` (woken by these commits).

`request_migration` is the one entry point for anything that wants a tenant moved: the API, and the
automatic placement (usage thresholds, the placement plan) in-process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from events import topics
from events.outbox import record
from servicekit.db import UniqueViolation
from servicekit.errors import Conflict, DomainError, NotFound
from servicekit.pagination import Keyset, Page, Timestamp, Uuid
from servicekit.platform import PlatformDB
from sqlalchemy import Row, func
from sqlalchemy.ext.asyncio import AsyncConnection

from migrator import domain, placement, repository
from migrator.domain import Direction

log = structlog.get_logger("migrator.usecases")

PLAN_TRIGGER = "placement_plan"  # tenant_migrations.trigger of a move the advisor's --apply asked for

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


@dataclass(frozen=True)
class Applied:
    """What asking for one recommended move gave: `queued` (the migration), `already_moving` (the
    tenant has an active move: 409, not a failure), or `refused` (the detail says why)."""

    tenant_id: uuid.UUID
    direction: Direction
    result: Literal["queued", "already_moving", "refused"]
    migration_id: uuid.UUID | None = None
    error: str | None = None


class PlacementAdvisor:
    """`GET /v1/placement/plan`: one read-only unit of work reads every tenant's facts in one
    statement (repository.placement_facts), the rules and the cost model (placement.py) decide.
    Applying a plan (`POST /v1/placement/plan/apply`, tenantctl's `--apply`) is asking for exactly its
    moves, one `MigratorService.request_migration` each, in the plan's order."""

    def __init__(
        self,
        db: PlatformDB,
        migrator: MigratorService,
        *,
        triggers: placement.Triggers,
        policy: placement.DemotePolicy,
        costs: placement.CostModel,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._migrator = migrator
        self.triggers = triggers
        self.policy = policy
        self.costs = costs
        self._clock = clock

    async def plan(self, *, tenant_ids: Sequence[uuid.UUID] | None = None) -> placement.PlacementPlan:
        """The plan of every tenant not deleted, or of `tenant_ids` alone (totals then as if they were
        the whole fleet: a what-if for a subset)."""
        today = self._clock().astimezone(UTC).date()
        async with self._db.unit_of_work(readonly=True) as uow:
            rows = await repository.placement_facts(
                uow.connection, today=today, lookback_days=self.policy.after_days, tenant_ids=tenant_ids
            )
        facts = [placement.TenantFacts(**row._mapping) for row in rows]
        return placement.plan(
            facts, triggers=self.triggers, policy=self.policy, costs=self.costs, today=today
        )

    async def apply(
        self, *, tenant_ids: Sequence[uuid.UUID] | None = None
    ) -> tuple[placement.PlacementPlan, list[Applied]]:
        """The plan, and each of its moves asked for. A tenant whose move is already active is
        reported (`already_moving`); one that cannot be moved (gone, deleted, already moved since the
        plan was read) is `refused`; neither stops the others."""
        plan = await self.plan(tenant_ids=tenant_ids)
        outcomes: list[Applied] = []
        for item in plan.items:
            if item.action == "stay":
                continue
            tenant_id = item.facts.tenant_id
            direction: Direction = "to_dedicated" if item.action == "promote" else "to_shared"
            reason = (
                f"placement plan {plan.generated_on.isoformat()}: {item.verdict.rule}: {item.verdict.reason}"
            )
            try:
                # Queued for the scheduler like the automatic placement's moves (concurrency limit,
                # allowed hours, retry backoff), below every trigger's priority.
                row = await self._migrator.request_migration(
                    tenant_id, direction=direction, reason=reason, trigger=PLAN_TRIGGER, priority=0
                )
            except Conflict as conflict:
                moving = conflict.extra.get("field") == "tenant_id"
                result: Literal["already_moving", "refused"] = "already_moving" if moving else "refused"
                outcomes.append(Applied(tenant_id, direction, result, error=conflict.detail))
                continue
            except DomainError as refused:
                outcomes.append(Applied(tenant_id, direction, "refused", error=refused.detail))
                continue
            outcomes.append(Applied(tenant_id, direction, "queued", migration_id=row.id))
        log.info(
            "placement plan applied",
            queued=[str(o.tenant_id) for o in outcomes if o.result == "queued"][:50],
            not_queued=[f"{o.tenant_id}: {o.result}" for o in outcomes if o.result != "queued"][:50],
        )
        return plan, outcomes
