"""The automatic placement's rules (migrator.triggers): the decision matrix and its overrides, what
each event means, the decisions, the scheduler's choice (priority, age, not_before, allowed hours,
the limit), backoff and cool-down arithmetic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from migrator import triggers
from migrator.triggers import AllowedHours, Queued, Rule, TenantState
from usage import domain as usage_domain

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def shared_tenant(**overrides: object) -> TenantState:
    values: dict[str, object] = {
        "status": "active",
        "tenant_type": "shared",
        "active_migration_id": None,
        "active_trigger": None,
        "last_completed_at": None,
    }
    return TenantState(**(values | overrides))  # type: ignore[arg-type]


def test_the_matrix_names_every_metric_usage_publishes() -> None:
    assert set(triggers.TRIGGERS) == set(usage_domain.METRICS)


def test_default_matrix_moves_the_five_migration_triggers_and_alerts_on_soft_limits() -> None:
    rules = triggers.matrix()
    assert {t for t, r in rules.items() if r.action == "move"} == {
        "products",
        "requests_per_month",
        "plan_enterprise",
        "compliance_isolation",
        "storage_gb",
    }
    assert {t for t, r in rules.items() if r.action == "alert"} == {
        "plan_max_products",
        "plan_max_requests_per_month",
        "plan_max_storage_gb",
    }
    # Compliance first, then enterprise, then size (the seed's timelines order the sizes).
    by_priority = sorted(
        (t for t, r in rules.items() if r.action == "move"), key=lambda t: -rules[t].priority
    )
    assert by_priority == [
        "compliance_isolation",
        "plan_enterprise",
        "requests_per_month",
        "products",
        "storage_gb",
    ]


def test_overrides_change_only_what_they_name() -> None:
    rules = triggers.matrix({"plan_max_products": {"action": "recommend"}, "products": {"priority": 500}})
    assert rules["plan_max_products"] == Rule("recommend", 0)
    assert rules["products"] == Rule("move", 500)
    assert rules["storage_gb"] == triggers.DEFAULT_MATRIX["storage_gb"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"prodcts": {"action": "move"}},
        {"products": {"action": "migrate"}},
        {"products": {"priority": "high"}},
        {"products": {"priority": True}},
        {"products": {"when": "now"}},
    ],
)
def test_a_wrong_override_is_refused(overrides: dict[str, dict[str, object]]) -> None:
    with pytest.raises(ValueError, match=r"trigger|action|priority|keys"):
        triggers.matrix(overrides)


def test_what_each_event_means() -> None:
    assert triggers.trigger_of("tenant.threshold_crossed", {"metric": "products"}) == "products"
    assert triggers.trigger_of("tenant.threshold_crossed", {"metric": "bandwidth_gb"}) is None
    assert triggers.trigger_of("tenant.threshold_crossed", {"metric": ["products"]}) is None
    assert triggers.trigger_of("tenant.plan_changed", {"old_plan": "basic", "new_plan": "enterprise"}) == (
        "plan_enterprise"
    )
    assert triggers.trigger_of("tenant.plan_changed", {"old_plan": "enterprise", "new_plan": "basic"}) is None
    assert (
        triggers.trigger_of("tenant.updated", {"compliance_isolation": True, "tenant_type": "shared"})
        == "compliance_isolation"
    )
    # A dedicated tenant's updates repeat the flag; an unset flag is no trigger.
    assert (
        triggers.trigger_of("tenant.updated", {"compliance_isolation": True, "tenant_type": "dedicated"})
        is None
    )
    assert (
        triggers.trigger_of("tenant.updated", {"compliance_isolation": False, "tenant_type": "shared"})
        is None
    )
    assert triggers.trigger_of("tenant.created", {"compliance_isolation": True}) is None
    assert triggers.trigger_of("tenant.placement_changed", {}) is None


def test_a_move_trigger_on_a_shared_tenant_is_queued() -> None:
    decision = triggers.decide("products", triggers.matrix(), shared_tenant(), now=NOW, cool_down=WEEK)
    assert (decision.action, decision.outcome, decision.priority, decision.not_before) == (
        "move",
        "queued",
        120,
        None,
    )


def test_skips_and_alerts() -> None:
    rules = triggers.matrix({"storage_gb": {"action": "recommend"}})
    active = uuid.uuid4()
    cases = {
        "unknown": triggers.decide("products", rules, None, now=NOW, cool_down=WEEK),
        "deleted": triggers.decide(
            "products", rules, shared_tenant(status="deleted"), now=NOW, cool_down=WEEK
        ),
        "dedicated": triggers.decide(
            "plan_enterprise", rules, shared_tenant(tenant_type="dedicated"), now=NOW, cool_down=WEEK
        ),
        "moving": triggers.decide(
            "compliance_isolation",
            rules,
            shared_tenant(active_migration_id=active, active_trigger="compliance_isolation"),
            now=NOW,
            cool_down=WEEK,
        ),
        "soft limit": triggers.decide("plan_max_products", rules, shared_tenant(), now=NOW, cool_down=WEEK),
        "recommend": triggers.decide("storage_gb", rules, shared_tenant(), now=NOW, cool_down=WEEK),
        "not in matrix": triggers.decide("bandwidth", rules, shared_tenant(), now=NOW, cool_down=WEEK),
    }
    assert {k: v.outcome for k, v in cases.items()} == {
        "unknown": "skipped",
        "deleted": "skipped",
        "dedicated": "skipped",
        "moving": "skipped",
        "soft limit": "alerted",
        "recommend": "recommended",
        "not in matrix": "skipped",
    }
    assert cases["moving"].existing_migration_id == active
    assert "the same cause" in cases["moving"].reason
    assert "already dedicated" in cases["dedicated"].reason


def test_cool_down_delays_a_move_but_not_compliance() -> None:
    tenant = shared_tenant(last_completed_at=NOW - timedelta(days=2))
    size = triggers.decide("products", triggers.matrix(), tenant, now=NOW, cool_down=WEEK)
    assert size.outcome == "queued"
    assert size.not_before == NOW + timedelta(days=5)
    urgent = triggers.decide("compliance_isolation", triggers.matrix(), tenant, now=NOW, cool_down=WEEK)
    assert urgent.outcome == "queued"
    assert urgent.not_before is None
    assert "overridden" in urgent.reason
    # A cool-down that is over, or none configured, delays nothing.
    old = shared_tenant(last_completed_at=NOW - timedelta(days=8))
    assert triggers.decide("products", triggers.matrix(), old, now=NOW, cool_down=WEEK).not_before is None
    assert (
        triggers.decide("products", triggers.matrix(), tenant, now=NOW, cool_down=timedelta(0)).not_before
        is None
    )


def test_backoff_doubles_and_is_capped() -> None:
    waits = [triggers.backoff(n, base_seconds=300, max_seconds=3600).total_seconds() for n in range(1, 7)]
    assert waits == [300, 600, 1200, 2400, 3600, 3600]
    assert triggers.backoff(10_000, base_seconds=1, max_seconds=60) == timedelta(seconds=60)


def test_allowed_hours() -> None:
    night = AllowedHours.parse("22:00-06:00")
    assert (night.start, night.end) == (time(22), time(6))
    assert night.contains(datetime(2026, 12, 1, 23, 30, tzinfo=UTC))
    assert night.contains(datetime(2026, 12, 1, 5, 59, tzinfo=UTC))
    assert not night.contains(datetime(2026, 12, 1, 6, 0, tzinfo=UTC))
    assert not night.contains(NOW)
    day = AllowedHours.parse("9-17")
    assert day.contains(NOW)
    assert not day.contains(datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    for wrong in ("22:00", "25:00-01:00", "x-y", "10-10"):
        with pytest.raises(ValueError, match="allowed hours"):
            AllowedHours.parse(wrong)


def _queued(trigger: str, priority: int, minutes_ago: int, not_before: datetime | None = None) -> Queued:
    return Queued(uuid.uuid4(), trigger, priority, NOW - timedelta(minutes=minutes_ago), not_before)


def test_the_scheduler_starts_highest_priority_then_oldest_within_the_limit() -> None:
    old_size = _queued("products", 120, 30)
    new_size = _queued("products", 120, 5)
    compliance = _queued("compliance_isolation", 300, 1)
    enterprise = _queued("plan_enterprise", 200, 10)
    queue = [old_size, new_size, compliance, enterprise]
    assert triggers.to_start(queue, running=0, limit=1, now=NOW, hours=None) == [compliance.id]
    assert triggers.to_start(queue, running=0, limit=3, now=NOW, hours=None) == [
        compliance.id,
        enterprise.id,
        old_size.id,
    ]
    assert triggers.to_start(queue, running=1, limit=1, now=NOW, hours=None) == []
    assert triggers.to_start(queue, running=2, limit=1, now=NOW, hours=None) == []


def test_the_scheduler_skips_what_must_wait_without_blocking_the_rest() -> None:
    backing_off = _queued("plan_enterprise", 200, 60, not_before=NOW + timedelta(seconds=1))
    size = _queued("products", 120, 5)
    assert triggers.to_start([backing_off, size], running=0, limit=1, now=NOW, hours=None) == [size.id]
    due = _queued("plan_enterprise", 200, 60, not_before=NOW)
    assert triggers.to_start([due, size], running=0, limit=1, now=NOW, hours=None) == [due.id]


def test_outside_the_allowed_hours_only_compliance_starts() -> None:
    night = AllowedHours.parse("22:00-06:00")
    size = _queued("products", 120, 30)
    compliance = _queued("compliance_isolation", 300, 1)
    assert triggers.to_start([size, compliance], running=0, limit=5, now=NOW, hours=night) == [compliance.id]
    at_night = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    assert triggers.to_start([size, compliance], running=0, limit=5, now=at_night, hours=night) == [
        compliance.id,
        size.id,
    ]


def test_retry_event_ids_are_derived_from_the_failed_migration() -> None:
    failed = uuid.uuid4()
    assert triggers.retry_event_id(failed) == triggers.retry_event_id(failed)
    assert triggers.retry_event_id(failed) != triggers.retry_event_id(uuid.uuid4())
