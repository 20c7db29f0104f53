"""The automatic placement's rules, no I/O: the decision matrix (what each trigger does, and how
urgently), what a trigger event means, and the arithmetic of scheduling (which queued moves start,
allowed hours, retry backoff, cool-down).

The matrix follows the seed's "Migration Decision Matrix" and CONTRACT.md §4: the five migration
triggers move the tenant automatically, ordered as the seed's timelines say (compliance "immediate",
4-8 h; enterprise and monthly requests 24-48 h; products 48-72 h; data size 72+ h). The plans' soft
limits only alert: a tenant over its plan's soft limit is a commercial matter (upgrade the plan),
not a placement one: moving a basic tenant with 1,001 products to its own database would cost more
than its plan earns, and once it is big enough to deserve one, the products trigger moves it anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any, Final, Literal, get_args

from events.thresholds import (
    COMPLIANCE_ISOLATION,
    PLAN_ENTERPRISE,
    PLAN_MAX_PRODUCTS,
    PLAN_MAX_REQUESTS,
    PLAN_MAX_STORAGE_GB,
    PRODUCTS,
    REQUESTS_PER_MONTH,
    STORAGE_GB,
)

Action = Literal["move", "recommend", "alert"]
TriggerName = Literal[
    "compliance_isolation",
    "plan_enterprise",
    "requests_per_month",
    "products",
    "storage_gb",
    "plan_max_products",
    "plan_max_requests_per_month",
    "plan_max_storage_gb",
]
Outcome = Literal["queued", "skipped", "recommended", "alerted"]

# Trigger names: the metrics of tenant.threshold_crossed (events.thresholds).
TRIGGERS: Final[tuple[str, ...]] = get_args(TriggerName)
# Compliance is a legal requirement: it starts outside the allowed hours and inside a cool-down.
URGENT_TRIGGERS: Final = frozenset({COMPLIANCE_ISOLATION})

# Retries of a failed move are decided with a derived event id (one retry per failed migration).
RETRY_NAMESPACE: Final = uuid.UUID("5d0f7a3e-2b9c-4c61-8e0a-6a1f4b2c9d73")


@dataclass(frozen=True)
class Rule:
    action: Action
    priority: int  # higher starts first


DEFAULT_MATRIX: Final[Mapping[str, Rule]] = {
    COMPLIANCE_ISOLATION: Rule("move", 300),
    PLAN_ENTERPRISE: Rule("move", 200),
    REQUESTS_PER_MONTH: Rule("move", 130),
    PRODUCTS: Rule("move", 120),
    STORAGE_GB: Rule("move", 110),
    PLAN_MAX_PRODUCTS: Rule("alert", 0),
    PLAN_MAX_REQUESTS: Rule("alert", 0),
    PLAN_MAX_STORAGE_GB: Rule("alert", 0),
}


def matrix(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Rule]:
    """The defaults with `overrides` (trigger -> {"action"?, "priority"?}) applied; an unknown trigger
    or action is a ValueError (a typo in the configuration must not silently change nothing)."""
    rules = dict(DEFAULT_MATRIX)
    for trigger, override in (overrides or {}).items():
        if trigger not in rules:
            raise ValueError(f"unknown trigger {trigger!r} (known: {', '.join(TRIGGERS)})")
        unknown = set(override) - {"action", "priority"}
        if unknown:
            raise ValueError(f"{trigger}: unknown keys {sorted(unknown)} (action, priority)")
        rule = rules[trigger]
        if "action" in override:
            if override["action"] not in ("move", "recommend", "alert"):
                raise ValueError(f"{trigger}: action must be move, recommend or alert")
            rule = replace(rule, action=override["action"])
        if "priority" in override:
            priority = override["priority"]
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise ValueError(f"{trigger}: priority must be an integer")
            rule = replace(rule, priority=priority)
        rules[trigger] = rule
    return rules


# ---------------------------------------------------------------- what an event means


def trigger_of(event_type: str, data: Mapping[str, Any]) -> str | None:
    """The trigger an event carries, or None (most tenancy events are no trigger).

    usage's `tenant.threshold_crossed` names its metric; tenancy's `tenant.plan_changed` to
    enterprise and `tenant.updated` with `compliance_isolation: true` are the same causes as usage's
    `plan_enterprise` / `compliance_isolation` crossings (whichever arrives first decides)."""
    if event_type == "tenant.threshold_crossed":
        # A metric the matrix does not know (a newer usage) is no trigger here: ignored, not recorded
        # (and never a metrics label of arbitrary text).
        metric = data.get("metric")
        return metric if metric in TRIGGERS else None
    if event_type == "tenant.plan_changed":
        return PLAN_ENTERPRISE if data.get("new_plan") == "enterprise" else None
    if event_type == "tenant.updated":
        # Every update of a compliance-isolated tenant repeats the flag: only a shared one's is news.
        wanted = data.get("compliance_isolation") is True and data.get("tenant_type") == "shared"
        return COMPLIANCE_ISOLATION if wanted else None
    return None


@dataclass(frozen=True)
class TenantState:
    """What a decision reads of the tenant and its moves."""

    status: str
    tenant_type: str
    # The tenant's active (pending or in progress) migration, if any.
    active_migration_id: uuid.UUID | None
    active_trigger: str | None
    # When its last completed move ended.
    last_completed_at: datetime | None


@dataclass(frozen=True)
class Decision:
    action: Action
    outcome: Outcome
    reason: str
    priority: int
    # For a queued move: not before this (a cool-down), else None (as soon as a slot is free).
    not_before: datetime | None = None
    # The migration the decision points at when it queued none (the one already active).
    existing_migration_id: uuid.UUID | None = None


def decide(
    trigger: str,
    rules: Mapping[str, Rule],
    tenant: TenantState | None,
    *,
    now: datetime,
    cool_down: timedelta,
    detail: str = "",
) -> Decision:
    """What to do with a trigger for a tenant. `detail` says what was crossed (for the reason)."""
    rule = rules.get(trigger)
    what = f"{trigger}{f' ({detail})' if detail else ''}"
    if rule is None:
        return Decision("alert", "skipped", f"{what}: not a trigger of the decision matrix", 0)
    if tenant is None:
        return Decision(rule.action, "skipped", f"{what}: the tenant is unknown", rule.priority)
    if tenant.status == "deleted":
        return Decision(rule.action, "skipped", f"{what}: the tenant is deleted", rule.priority)
    if rule.action == "alert":
        return Decision("alert", "alerted", f"{what}: alert only (decision matrix)", rule.priority)
    if tenant.tenant_type == "dedicated":
        return Decision(rule.action, "skipped", f"{what}: already dedicated", rule.priority)
    if tenant.active_migration_id is not None:
        same = " (the same cause)" if tenant.active_trigger == trigger else ""
        return Decision(
            rule.action,
            "skipped",
            f"{what}: a move of the tenant is already queued or running{same}",
            rule.priority,
            existing_migration_id=tenant.active_migration_id,
        )
    if rule.action == "recommend":
        return Decision(
            "recommend",
            "recommended",
            f"{what}: move to dedicated recommended (decision matrix)",
            rule.priority,
        )
    not_before = None
    reason = f"{what}: move to dedicated (decision matrix, priority {rule.priority})"
    until = cool_down_until(tenant.last_completed_at, cool_down)
    if until is not None and until > now:
        if trigger in URGENT_TRIGGERS:
            reason += f"; cool-down until {until.isoformat()} overridden ({trigger})"
        else:
            not_before = until
            reason += f"; waits for the cool-down after the last move, until {until.isoformat()}"
    return Decision("move", "queued", reason, rule.priority, not_before=not_before)


def retry_event_id(failed_migration_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(RETRY_NAMESPACE, f"retry:{failed_migration_id}")


# ---------------------------------------------------------------- scheduling arithmetic


def backoff(failed_attempt: int, *, base_seconds: float, max_seconds: float) -> timedelta:
    """The wait before the retry that follows failed attempt `failed_attempt` (1 = the first try):
    base, 2 x base, 4 x base, ... capped."""
    exponent = max(failed_attempt - 1, 0)
    seconds = min(base_seconds * (2 ** min(exponent, 62)), max_seconds)
    return timedelta(seconds=seconds)


def cool_down_until(last_completed_at: datetime | None, cool_down: timedelta) -> datetime | None:
    if last_completed_at is None or cool_down <= timedelta(0):
        return None
    return last_completed_at + cool_down


@dataclass(frozen=True)
class AllowedHours:
    """A daily UTC window `HH:MM-HH:MM`; one that ends before it starts spans midnight (22:00-06:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> AllowedHours:
        try:
            first, second = text.strip().split("-")
            start, end = time.fromisoformat(_hhmm(first)), time.fromisoformat(_hhmm(second))
        except ValueError:
            raise ValueError(f"allowed hours must look like 22:00-06:00 (UTC), not {text!r}") from None
        if start == end:
            raise ValueError("allowed hours: start and end must differ (leave unset for always)")
        return cls(start, end)

    def contains(self, moment: datetime) -> bool:
        now = moment.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


def _hhmm(value: str) -> str:
    value = value.strip()
    return f"{int(value):02d}:00" if value.isdigit() else value


@dataclass(frozen=True)
class Queued:
    """A pending automatic move, as the scheduler sees it."""

    id: uuid.UUID
    trigger: str
    priority: int
    requested_at: datetime
    not_before: datetime | None


def to_start(
    queued: Iterable[Queued],
    *,
    running: int,
    limit: int,
    now: datetime,
    hours: AllowedHours | None,
) -> list[uuid.UUID]:
    """Which queued moves start now: highest priority first, then the oldest; none before its
    `not_before`; outside the allowed hours only urgent triggers (compliance); no more than the
    slots left under `limit` (`running`: moves already in progress)."""
    free = limit - running
    chosen: list[uuid.UUID] = []
    ordered: Sequence[Queued] = sorted(queued, key=lambda q: (-q.priority, q.requested_at, q.id))
    for move in ordered:
        if len(chosen) >= free:
            break
        if move.not_before is not None and move.not_before > now:
            continue
        if hours is not None and not hours.contains(now) and move.trigger not in URGENT_TRIGGERS:
            continue
        chosen.append(move.id)
    return chosen
