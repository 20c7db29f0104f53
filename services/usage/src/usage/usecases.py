"""What usage does, each a platform-database unit of work.

`apply_batch` is the heart: one consumed batch (several partitions) in one transaction. The stored
offsets of its partitions are locked first and every record below them is dropped (already applied:
a redelivery after a crash or a rebalance); the batch's tenants are locked; a duplicate at another
offset is dropped by the mark of its (counter, sequence) for request counts (`usage_counter_marks`,
one row per counter and tenant) and by its event id in `usage_seen_events` for the rest; the batch
is aggregated per key and written with one upsert per table; thresholds are decided on the new
values and each crossing inserted under its unique key, its event into the outbox; the partitions'
new offsets are saved. All of it commits or none of it does, so a count and the position it was
read up to can never disagree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import structlog
from events import topics
from events.outbox import record
from events.thresholds import Triggers
from servicekit.errors import NotFound
from servicekit.platform import PlatformDB

from usage import domain, repository
from usage.domain import Clock, Counted, Crossing, Decisions, LevelTracker, PlanLimits, Tally
from usage.metrics import THRESHOLDS_EMITTED
from usage.repository import Partition

log = structlog.get_logger("usage")

_PLANS_TTL_SECONDS = 60.0
_DELETED = "deleted"


@dataclass
class BatchResult:
    applied: int = 0
    below_offset: int = 0  # records under the stored offset (redelivered)
    duplicates: int = 0  # event ids already counted
    unknown_tenant: int = 0  # events of tenants unknown to the platform, or deleted
    crossings: list[Crossing] = field(default_factory=list)
    counted: dict[str, int] = field(default_factory=dict)
    tallied: bool = False  # applied as tallied (every event fresh), not event by event


ExactBatch = Mapping[Partition, Sequence[tuple[int, Counted | None]]]


@dataclass
class PreparedBatch:
    """A consumed batch as the consumer hands it over: per partition its first and last offsets, the
    batch tallied while parsed, and its exact form (parsed record by record) for when the tally cannot
    be used."""

    spans: dict[Partition, tuple[int, int]]
    tally: Tally
    exact: Callable[[], ExactBatch]

    @classmethod
    def of_exact(cls, batch: ExactBatch) -> PreparedBatch:
        """A batch given in its exact form only: applied in it."""
        tally = Tally()
        tally.regular = False
        spans = {p: (records[0][0], records[-1][0]) for p, records in batch.items() if records}
        return cls(spans, tally, lambda: batch)


def next_month(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


class UsageService:
    def __init__(self, db: PlatformDB, *, triggers: Triggers, clock: Clock) -> None:
        self._db = db
        self.triggers = triggers
        self.clock = clock
        self._plans: dict[str, PlanLimits] = {}
        self._plans_loaded = -_PLANS_TTL_SECONDS
        self._rolled_month: date | None = None

    def current_month(self) -> date:
        return domain.month_of(self.clock().date())

    async def _limits(self, connection: Any) -> dict[str, PlanLimits]:
        if time.monotonic() - self._plans_loaded > _PLANS_TTL_SECONDS:
            self._plans = await repository.plan_limits(connection)
            self._plans_loaded = time.monotonic()
        return self._plans

    # The consumer's unit of work ---------------------------------------------------------------

    async def warm_up(self, group_id: str) -> None:
        """Readies a pooled connection for the first batch (repository.warm_up, the plans' limits
        loaded); rolled back, though nothing is written."""
        async with self._db.unit_of_work() as uow:
            await repository.warm_up(uow.connection, group_id)
            await self._limits(uow.connection)

    async def stored_offsets(self, group_id: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        async with self._db.unit_of_work(readonly=True) as uow:
            return await repository.read_offsets(uow.connection, group_id, partitions)

    async def apply_batch(self, group_id: str, batch: PreparedBatch) -> BatchResult:
        result = BatchResult()
        async with self._db.unit_of_work() as uow:
            connection = uow.connection
            stored = await repository.lock_offsets(connection, group_id, list(batch.spans))
            above = all(first >= stored.get(p, -1) for p, (first, _) in batch.spans.items())
            tallied = (
                batch.tally.regular and above and await self._apply_tally(connection, batch.tally, result)
            )
            result.tallied = tallied
            if not tallied:
                await self._apply_exact(connection, stored, batch.exact(), result)
            # Records are in offset order: a partition moves past its last one, or stays where it is
            # stored if all of them were below it.
            next_offsets = {p: max(stored.get(p, -1), last + 1) for p, (_, last) in batch.spans.items()}
            await repository.save_offsets(connection, group_id, next_offsets)
            await uow.commit()
        for crossing in result.crossings:
            THRESHOLDS_EMITTED.labels(crossing.metric).inc()
            log.info(
                "threshold crossed",
                tenant_id=str(crossing.tenant_id),
                metric=crossing.metric,
                period=crossing.period,
                value=str(crossing.value),
                threshold=str(crossing.threshold),
                event_id=str(crossing.event_id),
            )
        return result

    async def _apply_tally(self, connection: Any, tally: Tally, result: BatchResult) -> bool:
        """The batch as tallied, if every event in it is fresh: its records all at or above the stored
        offsets (checked by the caller), its tenants all live, each (counter, tenant)'s first sequence
        above its mark, none of its event ids seen before. Otherwise False, and nothing was written."""
        tenant_ids = tally.tenants()
        tenants = await repository.lock_tenants(connection, tenant_ids)
        if len(tenants) != len(tenant_ids) or any(row.status == _DELETED for row in tenants.values()):
            return False
        if not await repository.claim_fresh(connection, tally.spans(), tally.seen_ids):
            return False
        if tally.events:
            await self._count(connection, tenants, tally.aggregate(), tally.events, [], result)
        return True

    async def _apply_exact(
        self,
        connection: Any,
        stored: Mapping[Partition, int],
        batch: ExactBatch,
        result: BatchResult,
    ) -> None:
        """Each event decided on its own: dropped below its partition's stored offset, or as a
        duplicate by its counter's mark or its event id."""
        events: list[Counted] = []
        for partition, records in batch.items():
            start = stored.get(partition, -1)
            for offset, event in records:
                if offset < start:
                    result.below_offset += 1
                elif event is not None:
                    events.append(event)
        # The tenants' rows locked first (in id order): the marks below are then read and moved
        # by one transaction at a time, whichever consumer group it belongs to.
        tenants = await repository.lock_tenants(connection, sorted({e.tenant_id for e in events}))
        fresh, duplicates = await self._deduplicate(connection, events)
        result.duplicates = len(duplicates)
        live = {tenant_id for tenant_id, row in tenants.items() if row.status != _DELETED}
        kept = [e for e in fresh if e.tenant_id in live]
        revisit = [e for e in duplicates if e.event_type in domain.COUNTED and e.tenant_id in live]
        result.unknown_tenant = len(fresh) - len(kept)
        if kept or revisit:
            await self._count(connection, tenants, domain.aggregate(kept), len(kept), revisit, result)

    async def _deduplicate(
        self, connection: Any, events: list[Counted]
    ) -> tuple[list[Counted], list[Counted]]:
        """(fresh, duplicates), in the batch's order. Numbered request counts go by the mark of their
        (counter, tenant): fresh only above it (a counter sends a tenant's next event only after the
        previous one was acknowledged, so a duplicate is never above a later event). Anything else
        goes by its event id in usage_seen_events. A duplicate within the batch counts once too."""
        keys = {(e.counter, e.tenant_id) for e in events if e.counter is not None}
        marks = await repository.counter_marks(connection, list(keys))  # a read under the tenants' locks
        moved: dict[repository.CounterKey, int] = {}
        by_id = [e.event_id for e in events if e.counter is None]
        seen_before = await repository.insert_seen(connection, by_id)
        fresh: list[Counted] = []
        duplicates: list[Counted] = []
        in_batch: set[str] = set()
        for event in events:
            if event.counter is not None and event.sequence is not None:
                key = (event.counter, event.tenant_id)
                if event.sequence > moved.get(key, marks.get(key, 0)):
                    moved[key] = event.sequence
                    fresh.append(event)
                else:
                    duplicates.append(event)
            elif event.event_id not in seen_before and event.event_id not in in_batch:
                in_batch.add(event.event_id)
                fresh.append(event)
            else:
                duplicates.append(event)
        await repository.save_counter_marks(connection, moved)
        return fresh, duplicates

    async def _count(
        self,
        connection: Any,
        tenants: dict[uuid.UUID, Any],
        batch: domain.Aggregate,
        applied: int,
        revisit: list[Counted],
        result: BatchResult,
    ) -> None:
        """Counts the fresh events of live tenants, `batch`; `revisit` (duplicates: counted before,
        maybe by another group) count nothing, but their tenants' counter thresholds are judged again
        on the current values: whoever counted them may have judged with other triggers. (Not the
        plan and compliance transitions: those follow the events themselves, and a replayed old
        transition must not open a new episode.)"""
        result.counted = batch.counted
        result.applied = applied
        await repository.add_daily(connection, batch.daily)
        totals = await repository.add_monthly(connection, batch.monthly)
        added = {(t, m) for t, m, _ in totals}
        again = sorted(
            {
                (e.tenant_id, domain.month_of(e.day))
                for e in revisit
                if e.event_type == domain.REQUESTS_COUNTED
                and (e.tenant_id, domain.month_of(e.day)) not in added
            },
            key=lambda key: (str(key[0]), key[1]),
        )
        judged = totals + await repository.month_totals(connection, again)
        month = self.current_month()
        this_month = {tenant_id: total for tenant_id, m, total in totals if m == month}
        changes = [
            (tenant_id, batch.product_delta.get(tenant_id, 0), this_month.get(tenant_id))
            for tenant_id in sorted(set(batch.product_delta) | set(this_month))
        ]
        product_counts = await repository.update_tenant_counters(connection, changes)

        limits = await self._limits(connection)
        decisions = Decisions()
        for tenant_id, m, total in judged:
            plan = limits.get(tenants[tenant_id].plan)
            decisions.crossings += domain.monthly_crossings(tenant_id, m, total, self.triggers, plan)
        # Products are judged where they moved, or where a duplicate says they may have.
        recount = {
            e.tenant_id for e in revisit if e.event_type in (domain.PRODUCT_CREATED, domain.PRODUCT_DELETED)
        }
        products = {
            tenant_id: product_counts.get(tenant_id, tenants[tenant_id].product_count)
            for tenant_id in set(batch.product_delta) | recount
        }
        level_tenants = sorted(set(products) | set(batch.states))
        if level_tenants:
            states = await repository.level_states(connection, level_tenants, domain.LEVEL_METRICS)
            tracker = LevelTracker(states, decisions)
            for tenant_id in level_tenants:
                for event in batch.states.get(tenant_id, ()):
                    domain.observe_state(tracker, event)
                if tenant_id in products:
                    # The plan the tenant is on after this batch's state events (if any).
                    plan_name = next(
                        (e.plan for e in reversed(batch.states.get(tenant_id, [])) if e.plan),
                        tenants[tenant_id].plan,
                    )
                    domain.observe_products(
                        tracker, tenant_id, products[tenant_id], self.triggers, limits.get(plan_name)
                    )
        await self._record(connection, decisions, result)

    async def _record(self, connection: Any, decisions: Decisions, result: BatchResult) -> None:
        inserted = await repository.insert_crossings(connection, decisions.crossings)
        await repository.resolve_crossings(connection, decisions.resolved)
        if inserted:
            now = self.clock()
            await record(connection, topics.THRESHOLDS, *(c.envelope(now) for c in inserted))
        result.crossings += inserted

    # Month rollover, reconciliation, housekeeping -------------------------------------------------

    async def roll_month_if_due(self) -> int:
        """At the first check of a new UTC month (and at start), `monthly_requests` becomes the new
        month's total (0 until its first requests are counted)."""
        month = self.current_month()
        if month == self._rolled_month:
            return 0
        async with self._db.unit_of_work() as uow:
            changed = await repository.roll_month(uow.connection, month)
            await uow.commit()
        self._rolled_month = month
        if changed:
            log.info("month rolled over", month=domain.month_label(month), tenants=changed)
        return changed

    async def prune_seen(self, *, retention_days: int, limit: int = 10_000) -> int:
        async with self._db.unit_of_work() as uow:
            pruned = await repository.prune_seen(uow.connection, older_than_days=retention_days, limit=limit)
            pruned += await repository.prune_counter_marks(uow.connection, older_than_days=retention_days)
            await uow.commit()
        return pruned

    async def tenants_page(self, after: uuid.UUID | None, limit: int) -> list[Any]:
        async with self._db.unit_of_work(readonly=True) as uow:
            return await repository.tenants_page(uow.connection, after, limit)

    async def reconcile_tenant(
        self, tenant_id: uuid.UUID, *, product_correction: int, storage_gb: float | None
    ) -> list[Crossing]:
        """Correct `product_count` by `product_correction` and record today's storage estimate, then
        decide the level thresholds on the new values; in one transaction with the tenant locked."""
        result = BatchResult()
        async with self._db.unit_of_work() as uow:
            connection = uow.connection
            tenants = await repository.lock_tenants(connection, [tenant_id])
            row = tenants.get(tenant_id)
            if row is None or row.status == _DELETED:
                return []
            limits = (await self._limits(connection)).get(row.plan)
            states = await repository.level_states(connection, [tenant_id], domain.LEVEL_METRICS)
            decisions = Decisions()
            tracker = LevelTracker(states, decisions)
            if product_correction:
                count = await repository.set_product_count(connection, tenant_id, product_correction)
                domain.observe_products(tracker, tenant_id, count, self.triggers, limits)
            if storage_gb is not None:
                gigabytes = Decimal(str(storage_gb)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
                await repository.set_storage(connection, tenant_id, self.clock().date(), gigabytes)
                domain.observe_storage(tracker, tenant_id, float(gigabytes), self.triggers, limits)
            await self._record(connection, decisions, result)
            await uow.commit()
        for crossing in result.crossings:
            THRESHOLDS_EMITTED.labels(crossing.metric).inc()
        return result.crossings

    # Reads (the API) ------------------------------------------------------------------------------

    async def usage_of(self, tenant_id: uuid.UUID, month: date | None) -> dict[str, Any]:
        month = month or self.current_month()
        async with self._db.unit_of_work(readonly=True) as uow:
            connection = uow.connection
            tenant = await repository.tenant_counters(connection, tenant_id)
            if tenant is None:
                raise NotFound("tenant not found", tenant_id=str(tenant_id))
            daily = await repository.daily_rows(connection, tenant_id, month, next_month(month))
            crossings = await repository.crossings_of(connection, tenant_id)
            month_requests = await repository.month_total(connection, tenant_id, month)
        return {
            "tenant_id": tenant_id,
            "product_count": tenant.product_count,
            "monthly_requests": tenant.monthly_requests,
            "month": domain.month_label(month),
            "month_requests": month_requests,
            "daily": [
                {
                    "date": row.metric_date,
                    "requests_count": row.requests_count,
                    "products_count": row.products_count,
                    "orders_count": row.orders_count,
                    "storage_used_gb": float(row.storage_used_gb),
                }
                for row in daily
            ],
            "thresholds_crossed": [
                {
                    "metric": row.metric,
                    "period": row.period,
                    "value": float(row.value),
                    "threshold": float(row.threshold),
                    "event_id": row.event_id,
                    "crossed_at": row.crossed_at,
                    "resolved_at": row.resolved_at,
                }
                for row in crossings
            ],
        }

    async def busiest(self, *, month: date | None, order_by: str, limit: int) -> dict[str, Any]:
        month = month or self.current_month()
        async with self._db.unit_of_work(readonly=True) as uow:
            rows = await repository.busiest(
                uow.connection, order_by=order_by, month=month, end=next_month(month), limit=limit
            )
        return {
            "month": domain.month_label(month),
            "order_by": order_by,
            "items": [
                {
                    "tenant_id": row.tenant_id,
                    "requests_count": int(row.requests_count),
                    "product_count": row.product_count,
                    "storage_used_gb": float(row.storage_used_gb or 0),
                }
                for row in rows
            ],
        }
