"""The placement advisor's rules and cost model without servers: promotion at exactly the trigger,
the priority of the reasons, demotion only below the hysteresis fraction for N quiet days, the cost
shares and totals (the seed's 91 % recomputed), zero tenants, every tenant dedicated."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from migrator import placement
from migrator.placement import CostModel, DemotePolicy, TenantFacts, Triggers

TODAY = date(2026, 12, 1)
TRIGGERS = Triggers()  # 10,000 products, 100,000 requests a month, 10 GB
POLICY = DemotePolicy(after_days=30, below_fraction=0.5)
COSTS = CostModel()  # $200 a shared instance of 95 tenants, $50 a dedicated database


def facts(placement_: placement.Variant = "shared", **overrides: object) -> TenantFacts:
    base = TenantFacts(
        tenant_id=uuid.uuid4(),
        plan="basic",
        status="active",
        placement=placement_,
        compliance_isolation=False,
        product_count=10,
        monthly_requests=100,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def verdict(tenant: TenantFacts) -> placement.Verdict:
    return placement.recommend(tenant, TRIGGERS, POLICY, TODAY)


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"product_count": 10_000}, "products"),
        ({"monthly_requests": 100_000}, "requests_per_month"),
        ({"storage_gb": 10.0}, "storage_gb"),
        ({"plan": "enterprise"}, "plan_enterprise"),
        ({"compliance_isolation": True}, "compliance_isolation"),
    ],
)
def test_a_shared_tenant_exactly_at_a_trigger_is_promoted(overrides: dict[str, object], rule: str) -> None:
    found = verdict(facts(**overrides))
    assert (found.recommended, found.rule) == ("dedicated", rule)
    assert found.reason.startswith("promote: ")


@pytest.mark.parametrize(
    "overrides", [{"product_count": 9_999}, {"monthly_requests": 99_999}, {"storage_gb": 9.999}]
)
def test_one_below_the_trigger_stays_shared(overrides: dict[str, object]) -> None:
    found = verdict(facts(**overrides))
    assert (found.recommended, found.rule, found.reason) == (
        "shared",
        "below_triggers",
        "below every trigger",
    )


def test_compliance_comes_first_then_enterprise_then_size_and_all_are_named() -> None:
    found = verdict(facts(product_count=20_000, plan="enterprise", compliance_isolation=True))
    assert found.rule == "compliance_isolation"
    assert found.rules_met == ("compliance_isolation", "plan_enterprise", "products")
    assert found.reason == (
        "promote: compliance isolation is required (also: enterprise plan, products 20,000 ≥ 10,000)"
    )
    assert verdict(facts(product_count=20_000, plan="enterprise")).rule == "plan_enterprise"


def quiet(**overrides: object) -> TenantFacts:
    """A dedicated basic tenant quiet for 40 days with tiny usage: demoted unless overridden."""
    values: dict[str, object] = {"last_active_on": TODAY - timedelta(days=40)} | overrides
    return facts("dedicated", **values)


def test_a_quiet_small_dedicated_tenant_is_demoted() -> None:
    found = verdict(quiet())
    assert (found.recommended, found.rule) == ("shared", "idle")
    assert found.reason == (
        "demote: not enterprise, no compliance isolation, below 50 % of every trigger for 30 days"
    )
    # No known crossing or arrival at all: the usage figures alone decide.
    assert verdict(quiet(last_active_on=None)).rule == "idle"


@pytest.mark.parametrize("overrides", [{"plan": "enterprise"}, {"compliance_isolation": True}])
def test_enterprise_or_compliance_never_demotes(overrides: dict[str, object]) -> None:
    found = verdict(quiet(**overrides))
    assert found.recommended == "dedicated"
    assert found.reason.startswith("stays dedicated: ")


@pytest.mark.parametrize(
    ("field", "at_fraction", "below", "label"),
    [
        ("product_count", 5_000, 4_999, "products 5,000 not below 5,000 (50 % of the 10,000 trigger)"),
        ("peak_requests_30d", 50_000, 49_999, "peak 30-day requests 50,000 not below 50,000"),
        ("monthly_requests", 60_000, 49_999, "requests this month 60,000 not below 50,000"),
        ("peak_storage_gb", 5.0, 4.999, "peak storage 5 GB not below 5 GB (50 % of the 10 GB trigger)"),
    ],
)
def test_hysteresis_keeps_a_dedicated_tenant_between_half_and_the_trigger(
    field: str, at_fraction: float, below: float, label: str
) -> None:
    found = verdict(quiet(**{field: at_fraction}))
    assert (found.recommended, found.rule) == ("dedicated", "hysteresis")
    assert label in found.reason
    assert verdict(quiet(**{field: below})).rule == "idle"


def test_a_tenant_hovering_at_the_trigger_does_not_flap() -> None:
    """Promoted at 10,000; at 9,999 (below the trigger) it is not recommended back."""
    assert verdict(facts(product_count=10_000)).recommended == "dedicated"
    for count in (9_999, 7_500, 5_000):
        assert verdict(quiet(product_count=count)).recommended == "dedicated"
    assert verdict(facts(product_count=9_999)).recommended == "shared"


def test_quiet_days_count_from_the_last_crossing_or_arrival() -> None:
    at_29 = verdict(quiet(last_active_on=TODAY - timedelta(days=29)))
    assert (at_29.recommended, at_29.rule) == ("dedicated", "recently_active")
    assert "quiet for 29 of 30 days" in at_29.reason
    assert verdict(quiet(last_active_on=TODAY - timedelta(days=30))).rule == "idle"


def test_seed_numbers_95_shared_5_enterprise_save_91_percent() -> None:
    tenants = [facts() for _ in range(95)] + [
        facts("dedicated", plan="enterprise", last_active_on=TODAY) for _ in range(5)
    ]
    result = placement.plan(tenants, triggers=TRIGGERS, policy=POLICY, costs=COSTS, today=TODAY)
    totals = result.totals
    assert totals.monthly_cost_now == totals.monthly_cost_after == Decimal("450.00")
    assert totals.monthly_cost_all_dedicated == Decimal("5000.00")
    assert totals.saving_vs_all_dedicated_percent_now == 91.0
    assert (totals.shared_instances_now, totals.promotions, totals.demotions) == (1, 0, 0)
    shared = [i for i in result.items if i.facts.placement == "shared"]
    assert {i.monthly_cost_now for i in shared} == {Decimal("2.11")}  # 200 / 95
    assert {i.action for i in result.items} == {"stay"}


def test_costs_before_and_after_a_promotion_and_a_demotion() -> None:
    costs = CostModel(dedicated_overhead_monthly_cost=Decimal("5"), shared_instance_capacity_tenants=2)
    big = facts(product_count=12_000)
    small = [facts(), facts()]
    idle = quiet()
    result = placement.plan([big, *small, idle], triggers=TRIGGERS, policy=POLICY, costs=costs, today=TODAY)
    by_id = {i.facts.tenant_id: i for i in result.items}
    # Now: 3 shared on 2 instances ($400, $133.33 each), 1 dedicated at $55. After: 3 shared again
    # (two small + the demoted one), the big one dedicated.
    assert by_id[big.tenant_id].action == "promote"
    assert by_id[idle.tenant_id].action == "demote"
    assert by_id[big.tenant_id].monthly_cost_now == Decimal("133.33")
    assert by_id[big.tenant_id].monthly_cost_after == Decimal("55.00")
    assert by_id[idle.tenant_id].monthly_cost_now == Decimal("55.00")
    assert by_id[idle.tenant_id].monthly_cost_after == Decimal("133.33")
    totals = result.totals
    assert totals.monthly_cost_now == totals.monthly_cost_after == Decimal("455.00")
    assert totals.monthly_cost_all_dedicated == Decimal("220.00")
    assert totals.saving_vs_all_dedicated_percent_now == -106.8  # tiny fleets: dedicated is cheaper
    assert (totals.promotions, totals.demotions) == (1, 1)


def test_capacity_in_gigabytes_adds_instances() -> None:
    costs = CostModel(shared_instance_capacity_gb=10.0)
    tenants = [facts(storage_gb=6.0), facts(storage_gb=6.0), facts(storage_gb=6.0)]
    result = placement.plan(tenants, triggers=TRIGGERS, policy=POLICY, costs=costs, today=TODAY)
    assert result.totals.shared_instances_now == 2  # 18 GB over 10 GB instances; 3 tenants fit in one
    assert result.totals.monthly_cost_now == Decimal("400.00")


def test_zero_tenants() -> None:
    result = placement.plan([], triggers=TRIGGERS, policy=POLICY, costs=COSTS, today=TODAY)
    assert result.items == ()
    totals = result.totals
    assert (totals.tenants, totals.shared_instances_now, totals.monthly_cost_now) == (0, 0, Decimal("0.00"))
    assert totals.saving_vs_all_dedicated_percent_now is None


def test_every_tenant_dedicated_and_staying() -> None:
    tenants = [facts("dedicated", plan="enterprise") for _ in range(3)]
    totals = placement.plan(tenants, triggers=TRIGGERS, policy=POLICY, costs=COSTS, today=TODAY).totals
    assert (totals.shared_now, totals.shared_instances_now) == (0, 0)
    assert totals.monthly_cost_now == totals.monthly_cost_all_dedicated == Decimal("150.00")
    assert totals.saving_vs_all_dedicated_percent_now == 0.0
