"""The placement advisor's rules and cost model, no I/O: given each tenant's live facts, where it
should live and why, and what the fleet costs a month now, after the plan, and if every tenant were
dedicated (services/migrator/README.md, "Placement advisor").

Promote (shared -> dedicated), in this order of priority (the first that holds is the reason; all
that hold are listed): compliance isolation, the enterprise plan, then size: products, requests in
the calendar month, storage, each at or past its trigger (the same triggers and field names as
usage's, CONTRACT.md §4).

Demote (dedicated -> shared) a tenant that is neither enterprise nor compliance-isolated only when
every measure stayed below `demote_below_fraction` of its trigger for `demote_after_days` days:
products now, the peak of the rolling 30-day request total and of the daily storage figure over those
days, and no threshold crossing (usage_thresholds) nor arrival on its placement in those days. The
fraction is the hysteresis: a tenant promoted at 10,000 products is demoted only below 5,000 (by
default), so a tenant hovering at a trigger is never recommended back and forth.

Cost model. A shared instance costs `shared_instance_monthly_cost` and holds
`shared_instance_capacity_tenants` tenants (and, when set, `shared_instance_capacity_gb` of data):
the shared tenants need as many instances as the larger of the two quotients (rounded up; none when
there are no shared tenants). The instances' cost is shared equally by the shared tenants (by count,
not by size: the seed's capacity is stated in tenants, and a tenant's load on the instance is not
what its storage says). A dedicated database costs `dedicated_monthly_cost` plus
`dedicated_overhead_monthly_cost`: the price of what every dedicated database adds around it (each
tenant-serving process keeps a pool of connections to each dedicated database, and PostgreSQL a
backend per connection); the seed's $50 is all-in, so the overhead defaults to 0.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final, Literal

from events import thresholds
from events.thresholds import Triggers as Triggers  # the advisor's levels: the migration triggers

Variant = Literal["shared", "dedicated"]
Action = Literal["promote", "demote", "stay"]

CENT: Final = Decimal("0.01")
ROLLING_REQUEST_DAYS: Final = 30  # the request trigger is monthly: its rolling twin spans 30 days

# The rules, as the `rule` of a recommendation (stable names; `reason` is the sentence).
COMPLIANCE: Final = thresholds.COMPLIANCE_ISOLATION
ENTERPRISE: Final = thresholds.PLAN_ENTERPRISE
PRODUCTS: Final = thresholds.PRODUCTS
REQUESTS: Final = thresholds.REQUESTS_PER_MONTH
STORAGE: Final = thresholds.STORAGE_GB
BELOW_TRIGGERS: Final = "below_triggers"  # shared, stays
IDLE: Final = "idle"  # dedicated, demoted
HYSTERESIS: Final = "hysteresis"  # dedicated, below the triggers but not below the fraction
RECENTLY_ACTIVE: Final = "recently_active"  # dedicated, quiet for fewer than N days


@dataclass(frozen=True)
class DemotePolicy:
    after_days: int = 30
    below_fraction: float = 0.5


@dataclass(frozen=True)
class CostModel:
    shared_instance_monthly_cost: Decimal = Decimal("200")
    shared_instance_capacity_tenants: int = 95
    shared_instance_capacity_gb: float | None = None
    dedicated_monthly_cost: Decimal = Decimal("50")
    dedicated_overhead_monthly_cost: Decimal = Decimal("0")

    @property
    def dedicated_cost(self) -> Decimal:
        return self.dedicated_monthly_cost + self.dedicated_overhead_monthly_cost

    def shared_instances(self, tenants: int, gigabytes: float) -> int:
        if tenants <= 0:
            return 0
        needed = math.ceil(tenants / self.shared_instance_capacity_tenants)
        if self.shared_instance_capacity_gb:
            needed = max(needed, math.ceil(gigabytes / self.shared_instance_capacity_gb))
        return max(needed, 1)

    def fleet_cost(self, shared_tenants: int, shared_gb: float, dedicated_tenants: int) -> Decimal:
        instances = self.shared_instances(shared_tenants, shared_gb)
        return instances * self.shared_instance_monthly_cost + dedicated_tenants * self.dedicated_cost

    def shared_share(self, shared_tenants: int, shared_gb: float) -> Decimal:
        """One shared tenant's monthly cost: the instances' cost divided equally."""
        if shared_tenants <= 0:
            return Decimal(0)
        total = self.shared_instances(shared_tenants, shared_gb) * self.shared_instance_monthly_cost
        return money(total / shared_tenants)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class TenantFacts:
    """What the advisor knows of a tenant (repository.placement_facts reads it in one statement).

    `storage_gb`: the latest non-zero daily figure (a daily row made by request counting before the
    day's storage reconciliation says 0, which is not a measurement); `peak_*`: over the last
    `demote_after_days` days (requests: the rolling 30-day totals ending on each of those days);
    `last_active_on`: the last day the tenant was over a trigger (an open crossing is today; a monthly
    crossing lasts until its month ends) or arrived on its current placement; None when neither is
    known."""

    tenant_id: uuid.UUID
    plan: str
    status: str
    placement: Variant
    compliance_isolation: bool
    product_count: int
    monthly_requests: int
    storage_gb: float = 0.0
    peak_requests_30d: int = 0
    peak_storage_gb: float = 0.0
    last_active_on: date | None = None
    active_migration_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Verdict:
    recommended: Variant
    rule: str
    reason: str
    rules_met: tuple[str, ...]  # every promotion rule that holds, in priority order


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}".rstrip("0")


def _promotions(facts: TenantFacts, triggers: Triggers) -> list[tuple[str, str]]:
    met: list[tuple[str, str]] = []
    if facts.compliance_isolation:
        met.append((COMPLIANCE, "compliance isolation is required"))
    if facts.plan == "enterprise":
        met.append((ENTERPRISE, "enterprise plan"))
    if facts.product_count >= triggers.products:
        met.append((PRODUCTS, f"products {_n(facts.product_count)} ≥ {_n(triggers.products)}"))
    if facts.monthly_requests >= triggers.requests_per_month:
        met.append(
            (
                REQUESTS,
                f"requests this month {_n(facts.monthly_requests)} ≥ {_n(triggers.requests_per_month)}",
            )
        )
    if facts.storage_gb >= triggers.storage_gb:
        met.append((STORAGE, f"storage {_n(facts.storage_gb)} GB ≥ {_n(triggers.storage_gb)} GB"))
    return met


def recommend(facts: TenantFacts, triggers: Triggers, policy: DemotePolicy, today: date) -> Verdict:
    """Where the tenant should live, by which rule, in words."""
    met = _promotions(facts, triggers)
    rules = tuple(rule for rule, _ in met)
    if met:
        rule, words = met[0]
        also = f" (also: {', '.join(w for _, w in met[1:])})" if len(met) > 1 else ""
        verb = "promote" if facts.placement == "shared" else "stays dedicated"
        return Verdict("dedicated", rule, f"{verb}: {words}{also}", rules)
    if facts.placement == "shared":
        return Verdict("shared", BELOW_TRIGGERS, "below every trigger", rules)
    return _demotion(facts, triggers, policy, today)


def _demotion(facts: TenantFacts, triggers: Triggers, policy: DemotePolicy, today: date) -> Verdict:
    f = policy.below_fraction
    percent = f"{f * 100:g} %"
    bands = [
        ("products", facts.product_count, triggers.products, ""),
        (
            f"peak {ROLLING_REQUEST_DAYS}-day requests",
            facts.peak_requests_30d,
            triggers.requests_per_month,
            "",
        ),
        ("requests this month", facts.monthly_requests, triggers.requests_per_month, ""),
        ("peak storage", max(facts.peak_storage_gb, facts.storage_gb), triggers.storage_gb, " GB"),
    ]
    for label, value, trigger, unit in bands:
        if value >= f * trigger:
            return Verdict(
                "dedicated",
                HYSTERESIS,
                f"stays dedicated: {label} {_n(value)}{unit} not below {_n(f * trigger)}{unit} "
                f"({percent} of the {_n(trigger)}{unit} trigger)",
                (),
            )
    if facts.last_active_on is not None:
        quiet = (today - facts.last_active_on).days
        if quiet < policy.after_days:
            return Verdict(
                "dedicated",
                RECENTLY_ACTIVE,
                f"stays dedicated: quiet for {quiet} of {policy.after_days} days "
                f"(last over a trigger or moved on {facts.last_active_on.isoformat()})",
                (),
            )
    return Verdict(
        "shared",
        IDLE,
        f"demote: not enterprise, no compliance isolation, below {percent} of every trigger "
        f"for {policy.after_days} days",
        (),
    )


@dataclass(frozen=True)
class Item:
    facts: TenantFacts
    verdict: Verdict
    monthly_cost_now: Decimal
    monthly_cost_after: Decimal

    @property
    def action(self) -> Action:
        if self.verdict.recommended == self.facts.placement:
            return "stay"
        return "promote" if self.verdict.recommended == "dedicated" else "demote"


@dataclass(frozen=True)
class Totals:
    tenants: int
    shared_now: int
    dedicated_now: int
    shared_after: int
    dedicated_after: int
    shared_instances_now: int
    shared_instances_after: int
    promotions: int
    demotions: int
    monthly_cost_now: Decimal
    monthly_cost_after: Decimal
    monthly_cost_all_dedicated: Decimal
    # 100 * (1 - cost / all-dedicated): the seed's "91 %" claim, from live data; None for no tenants.
    saving_vs_all_dedicated_percent_now: float | None
    saving_vs_all_dedicated_percent_after: float | None


@dataclass(frozen=True)
class PlacementPlan:
    generated_on: date
    items: tuple[Item, ...]
    totals: Totals


def _saving(cost: Decimal, all_dedicated: Decimal) -> float | None:
    if all_dedicated <= 0:
        return None
    return round(float((1 - cost / all_dedicated) * 100), 1)


def plan(
    tenants: Iterable[TenantFacts],
    *,
    triggers: Triggers,
    policy: DemotePolicy,
    costs: CostModel,
    today: date,
) -> PlacementPlan:
    """Every tenant's verdict and costs, and the fleet's totals. Totals are computed from the counts
    (instances times their cost), items from the equal shares, each rounded to the cent: the items'
    sum may differ from the total by a few cents."""
    facts = list(tenants)
    verdicts = [recommend(t, triggers, policy, today) for t in facts]

    def census(placements: Sequence[Variant]) -> tuple[int, float]:
        shared = [t for t, p in zip(facts, placements, strict=True) if p == "shared"]
        return len(shared), sum(t.storage_gb for t in shared)

    now = [t.placement for t in facts]
    after = [v.recommended for v in verdicts]
    shared_now, gb_now = census(now)
    shared_after, gb_after = census(after)
    share_now = costs.shared_share(shared_now, gb_now)
    share_after = costs.shared_share(shared_after, gb_after)
    dedicated = money(costs.dedicated_cost)
    items = tuple(
        Item(
            t,
            v,
            share_now if t.placement == "shared" else dedicated,
            share_after if v.recommended == "shared" else dedicated,
        )
        for t, v in zip(facts, verdicts, strict=True)
    )
    cost_now = money(costs.fleet_cost(shared_now, gb_now, len(facts) - shared_now))
    cost_after = money(costs.fleet_cost(shared_after, gb_after, len(facts) - shared_after))
    all_dedicated = money(len(facts) * costs.dedicated_cost)
    totals = Totals(
        tenants=len(facts),
        shared_now=shared_now,
        dedicated_now=len(facts) - shared_now,
        shared_after=shared_after,
        dedicated_after=len(facts) - shared_after,
        shared_instances_now=costs.shared_instances(shared_now, gb_now),
        shared_instances_after=costs.shared_instances(shared_after, gb_after),
        promotions=sum(1 for i in items if i.action == "promote"),
        demotions=sum(1 for i in items if i.action == "demote"),
        monthly_cost_now=cost_now,
        monthly_cost_after=cost_after,
        monthly_cost_all_dedicated=all_dedicated,
        saving_vs_all_dedicated_percent_now=_saving(cost_now, all_dedicated),
        saving_vs_all_dedicated_percent_after=_saving(cost_after, all_dedicated),
    )
    return PlacementPlan(today, items, totals)
