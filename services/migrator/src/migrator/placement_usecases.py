"""The automatic placement's use cases: a trigger event decided (the decision matrix applied, a move
queued or not, the decision recorded), a failed automatic move's retry queued, the decisions listed.

Every decision is one platform transaction: the decision row (unique by the event's id) and, when it
queues a move, the migration and its migration.started event, so a redelivered event finds its
decision and does nothing, and a crash between the two leaves neither. Decisions of one tenant are
serialized (an advisory lock per tenant): a compliance flag and usage's compliance crossing arriving
at once on two topics decide one after the other, and the second sees the first's move.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from events.envelope import Envelope
from prometheus_client import Counter
from servicekit.errors import Conflict, Invalid, NotFound
from servicekit.pagination import Keyset, Page, Timestamp, Uuid
from servicekit.platform import PlatformDB
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from migrator import placement_repository, repository, triggers
from migrator.domain import DIRECTIONS
from migrator.settings import MigratorSettings
from migrator.usecases import queue_migration

log = structlog.get_logger("migrator.placement")

DECISIONS: Final = Counter(
    "migrator_placement_decisions_total",
    "Placement decisions, by trigger and outcome",
    ["trigger", "outcome"],
)
NEWEST_DECISIONS: Keyset[Row[Any]] = Keyset(
    "decisions", (Timestamp(), Uuid()), lambda row: (row.created_at, row.id)
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _detail(event_type: str, data: dict[str, Any]) -> str:
    if event_type == "tenant.threshold_crossed":
        return f"{data.get('value')} >= {data.get('threshold')}, {data.get('period')}"
    if event_type == "tenant.plan_changed":
        return f"plan {data.get('old_plan')} -> {data.get('new_plan')}"
    if event_type == "tenant.updated":
        return "compliance_isolation set"
    return event_type


class PlacementService:
    def __init__(self, db: PlatformDB, settings: MigratorSettings, *, clock: Clock = utc_now) -> None:
        self._db = db
        self._settings = settings
        self._rules = settings.decision_matrix
        self._clock = clock
        self._wake: Callable[[], None] = lambda: None

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Called after a decision queued a move (the runner's wake-up)."""
        self._wake = wake

    async def apply_trigger(self, envelope: Envelope) -> str:
        """Decide on one event; what happened, for the logs and metrics: "ignored" (no trigger),
        "duplicate" (decided before) or the decision's outcome."""
        trigger = triggers.trigger_of(envelope.event_type, envelope.data)
        if trigger is None:
            return "ignored"
        now = self._clock()
        async with self._db.unit_of_work() as uow:
            connection = uow.connection
            await placement_repository.lock_tenant_decisions(connection, envelope.tenant_id)
            if await placement_repository.decision_of_event(connection, envelope.event_id) is not None:
                return "duplicate"
            state = await self._state(connection, envelope.tenant_id)
            decision = triggers.decide(
                trigger,
                self._rules,
                state,
                now=now,
                cool_down=timedelta(seconds=self._settings.placement_cool_down_seconds),
                detail=_detail(envelope.event_type, envelope.data),
            )
            outcome, reason = decision.outcome, decision.reason
            migration_id = decision.existing_migration_id
            if outcome == "queued":
                try:
                    async with connection.begin_nested():  # a manual request may have won the race
                        row = await queue_migration(
                            connection,
                            envelope.tenant_id,
                            direction="to_dedicated",
                            reason=reason,
                            trigger=trigger,
                            priority=decision.priority,
                            not_before=decision.not_before,
                        )
                    migration_id = row.id
                except (Conflict, NotFound, Invalid) as error:
                    outcome, reason = "skipped", f"{trigger}: {error}"
            recorded = await placement_repository.insert_decision(
                connection,
                {
                    "tenant_id": envelope.tenant_id,
                    "trigger": trigger,
                    "event_id": envelope.event_id,
                    "event_type": envelope.event_type,
                    "action": decision.action,
                    "outcome": outcome,
                    "reason": reason,
                    "priority": decision.priority,
                    "migration_id": migration_id,
                },
            )
            if recorded is None:
                return "duplicate"
            await uow.commit()
        DECISIONS.labels(trigger, outcome).inc()
        fields = {
            "tenant_id": str(envelope.tenant_id),
            "event_id": str(envelope.event_id),
            "trigger": trigger,
            "outcome": outcome,
            "migration_id": str(migration_id) if migration_id else None,
            "reason": reason,
        }
        if outcome == "alerted":
            log.warning("placement alert", **fields)
        else:
            log.info("placement decision", **fields)
        if outcome == "queued":
            self._wake()
        return outcome

    async def _state(self, connection: AsyncConnection, tenant_id: uuid.UUID) -> triggers.TenantState | None:
        tenant = await repository.get_tenant(connection, tenant_id)
        if tenant is None:
            return None
        active = await placement_repository.active_migration(connection, tenant_id)
        return triggers.TenantState(
            status=tenant.status,
            tenant_type=tenant.tenant_type,
            active_migration_id=active.id if active is not None else None,
            active_trigger=active.trigger if active is not None else None,
            last_completed_at=await placement_repository.last_completed_at(connection, tenant_id),
        )

    async def find(
        self,
        *,
        tenant_id: uuid.UUID | None,
        trigger: str | None,
        outcome: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Row[Any]]:
        after = NEWEST_DECISIONS.decode(cursor)
        async with self._db.unit_of_work(readonly=True) as uow:
            rows = await placement_repository.list_decisions(
                uow.connection,
                tenant_id=tenant_id,
                trigger=trigger,
                outcome=outcome,
                after=after,
                limit=limit + 1,
            )
        return Page(*NEWEST_DECISIONS.page(rows, limit))


async def queue_retry(
    connection: AsyncConnection, failed: Row[Any], settings: MigratorSettings, now: datetime
) -> str:
    """After an automatic move failed (rolled back): its retry queued no sooner than the backoff, or,
    after the last attempt, an alert. On the runner's transaction that records the failure, so the
    retry exists exactly when the failure does. The decision's event id derives from the failed
    migration's, so it is taken once."""
    trigger: str = failed.trigger
    attempt: int = failed.attempt
    event_id = triggers.retry_event_id(failed.id)
    await placement_repository.lock_tenant_decisions(connection, failed.tenant_id)
    if await placement_repository.decision_of_event(connection, event_id) is not None:
        return "duplicate"
    migration_id: uuid.UUID | None = None
    if attempt >= settings.placement_max_attempts:
        action, outcome = "alert", "alerted"
        reason = f"{trigger}: the move failed {attempt} times; no further retry (on-call: tenantctl migrate)"
    else:
        wait = triggers.backoff(
            attempt,
            base_seconds=settings.placement_retry_backoff_seconds,
            max_seconds=settings.placement_retry_backoff_max_seconds,
        )
        not_before = now + wait
        action, outcome = "move", "queued"
        reason = (
            f"{trigger}: retry {attempt + 1} of {settings.placement_max_attempts} after failed move "
            f"{failed.id}; backoff {wait.total_seconds():g} s, not before {not_before.isoformat()}"
        )
        try:
            async with connection.begin_nested():
                row = await queue_migration(
                    connection,
                    failed.tenant_id,
                    direction=DIRECTIONS[failed.migration_type],
                    reason=reason,
                    trigger=trigger,
                    priority=failed.priority,
                    not_before=not_before,
                    attempt=attempt + 1,
                )
            migration_id = row.id
        except (Conflict, NotFound, Invalid) as error:  # moved by hand meanwhile, or deleted
            outcome, reason = "skipped", f"{trigger}: retry not queued: {error}"
    await placement_repository.insert_decision(
        connection,
        {
            "tenant_id": failed.tenant_id,
            "trigger": trigger,
            "event_id": event_id,
            "event_type": "migration.failed",
            "action": action,
            "outcome": outcome,
            "reason": reason,
            "priority": failed.priority,
            "migration_id": migration_id,
        },
    )
    DECISIONS.labels(trigger, outcome).inc()
    log.warning(
        "automatic move failed; retry decided",
        tenant_id=str(failed.tenant_id),
        failed_migration_id=str(failed.id),
        outcome=outcome,
        reason=reason,
    )
    return outcome
