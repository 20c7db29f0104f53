"""Request and response models of the migrator API (CONTRACT.md §3, migrator)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from servicekit.validation import Text

from migrator.domain import Direction

Reason = Annotated[Text, Field(min_length=1, max_length=1000)]


class MigrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: uuid.UUID
    # Default: away from where the tenant is now.
    direction: Direction | None = None
    reason: Reason | None = None


class MigrationOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    migration_type: str
    status: Literal["pending", "in_progress", "completed", "failed", "cancelled"]
    phase: str
    from_state: dict[str, Any]
    to_state: dict[str, Any]
    reason: str | None
    # The automatic placement's scheduling: the trigger (None: asked for by hand), its priority, not
    # before when (a retry's backoff, a cool-down), the how-manieth try of the trigger.
    trigger: str | None
    priority: int
    not_before: datetime | None
    attempt: int
    progress: dict[str, Any]
    cutover_attempts: int
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    error_message: str | None


class MigrationPage(BaseModel):
    items: list[MigrationOut]
    next_cursor: str | None


# The placement plan (GET /v1/placement/plan; migrator/placement.py has the rules and the costs).
# Money is in the cost model's currency, per month, rounded to the cent.
Placement = Literal["shared", "dedicated"]


class PlacementItem(BaseModel):
    tenant_id: uuid.UUID
    plan: str
    status: str
    placement_now: Placement
    recommended: Placement
    action: Literal["promote", "demote", "stay"]
    rule: str = Field(
        description="compliance_isolation, plan_enterprise, products, requests_per_month, storage_gb, "
        "below_triggers, idle, hysteresis or recently_active"
    )
    reason: str
    rules_met: list[str] = Field(description="every promotion rule that holds, in priority order")
    monthly_cost_now: float
    monthly_cost_after: float
    product_count: int
    monthly_requests: int
    storage_gb: float = Field(description="the latest non-zero daily storage figure")
    peak_requests_30d: int = Field(description="the highest rolling 30-day request total of the lookback")
    peak_storage_gb: float = Field(description="the highest daily storage figure of the lookback")
    last_active_on: date | None = Field(
        description="the last day over a trigger or of arrival on its placement (None: none known)"
    )
    active_migration_id: uuid.UUID | None = Field(description="a move already pending or running")


class PlacementTotals(BaseModel):
    tenants: int
    shared_now: int
    dedicated_now: int
    shared_after: int
    dedicated_after: int
    shared_instances_now: int
    shared_instances_after: int
    promotions: int
    demotions: int
    monthly_cost_now: float
    monthly_cost_after: float
    monthly_cost_all_dedicated: float
    saving_vs_all_dedicated_percent_now: float | None
    saving_vs_all_dedicated_percent_after: float | None


class PlacementModel(BaseModel):
    """The configuration the plan was computed with (migrator settings)."""

    trigger_products: int
    trigger_requests_per_month: int
    trigger_storage_gb: float
    shared_instance_monthly_cost: float
    shared_instance_capacity_tenants: int
    shared_instance_capacity_gb: float | None
    dedicated_monthly_cost: float
    dedicated_overhead_monthly_cost: float
    demote_after_days: int
    demote_below_fraction: float


class PlacementPlanOut(BaseModel):
    generated_on: date
    model: PlacementModel
    items: list[PlacementItem]
    totals: PlacementTotals


class PlacementApplied(BaseModel):
    tenant_id: uuid.UUID
    direction: Direction
    result: Literal["queued", "already_moving", "refused"] = Field(
        description="queued: the migration was asked for; already_moving: the tenant has an active "
        "move (not a failure); refused: it cannot be moved (see error)"
    )
    migration_id: uuid.UUID | None
    error: str | None


class PlacementApplyOut(PlacementPlanOut):
    """The plan as it was applied, and what asking for each of its moves gave."""

    applied: list[PlacementApplied]


class DecisionOut(BaseModel):
    """One decision of the automatic placement on a trigger (placement_decisions)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    trigger: str
    event_id: uuid.UUID
    event_type: str
    action: Literal["move", "recommend", "alert"]
    outcome: Literal["queued", "skipped", "recommended", "alerted"]
    reason: str
    priority: int
    migration_id: uuid.UUID | None
    created_at: datetime


class DecisionPage(BaseModel):
    items: list[DecisionOut]
    next_cursor: str | None
