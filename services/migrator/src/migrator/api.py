"""HTTP routes of the migrator: parse, call a use case, shape the response."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request, status
from servicekit.http import ModelResponse, usecases
from servicekit.pagination import Cursor, Limit
from sqlalchemy import Row

from migrator import placement
from migrator.placement_usecases import PlacementService
from migrator.schemas import (
    DecisionOut,
    DecisionPage,
    MigrationCreate,
    MigrationOut,
    MigrationPage,
    PlacementApplied,
    PlacementApplyOut,
    PlacementItem,
    PlacementModel,
    PlacementPlanOut,
    PlacementTotals,
)
from migrator.triggers import TriggerName
from migrator.usecases import MigratorService, PlacementAdvisor

MAX_PLAN_TENANTS: Final = 500

router = APIRouter(prefix="/v1", tags=["migrator"])

service = usecases(MigratorService)


def _out(row: Row[Any]) -> MigrationOut:
    return MigrationOut.model_validate(row._mapping, from_attributes=False)


@router.post("/migrations", status_code=status.HTTP_202_ACCEPTED)
async def create_migration(body: MigrationCreate, request: Request) -> MigrationOut:
    row = await service(request).request_migration(
        body.tenant_id, direction=body.direction, reason=body.reason
    )
    return _out(row)


@router.get("/migrations/{migration_id}")
async def get_migration(migration_id: uuid.UUID, request: Request) -> MigrationOut:
    return _out(await service(request).get(migration_id))


@router.get("/migrations")
async def list_migrations(
    request: Request,
    tenant_id: uuid.UUID | None = None,
    status: Literal["pending", "in_progress", "completed", "failed", "cancelled"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> MigrationPage:
    page = await service(request).find(tenant_id=tenant_id, status=status, cursor=cursor, limit=limit)
    return MigrationPage(items=[_out(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/placement/decisions")
async def list_placement_decisions(
    request: Request,
    tenant_id: uuid.UUID | None = None,
    trigger: TriggerName | None = None,
    outcome: Literal["queued", "skipped", "recommended", "alerted"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DecisionPage:
    """The automatic placement's decisions, newest first: every trigger seen, what the decision
    matrix made of it (moved, queued, skipped and why), the migration it queued."""
    placement: PlacementService = request.app.state.placement
    page = await placement.find(
        tenant_id=tenant_id, trigger=trigger, outcome=outcome, cursor=cursor, limit=limit
    )
    return DecisionPage(
        items=[DecisionOut.model_validate(r._mapping, from_attributes=False) for r in page.items],
        next_cursor=page.next_cursor,
    )


@router.post("/migrations/{migration_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_migration(migration_id: uuid.UUID, request: Request) -> MigrationOut:
    return _out(await service(request).cancel(migration_id))


@router.post("/migrations/{migration_id}/cleanup", status_code=status.HTTP_202_ACCEPTED)
async def cleanup_migration(migration_id: uuid.UUID, request: Request) -> MigrationOut:
    return _out(await service(request).cleanup_now(migration_id))


# The placement advisor ----------------------------------------------------------------------------


def _advisor(request: Request) -> PlacementAdvisor:
    advisor: PlacementAdvisor = request.app.state.advisor
    return advisor


def _plan_out(
    advisor: PlacementAdvisor, plan: placement.PlacementPlan, *, only_changes: bool
) -> PlacementPlanOut:
    items = [
        PlacementItem(
            tenant_id=i.facts.tenant_id,
            plan=i.facts.plan,
            status=i.facts.status,
            placement_now=i.facts.placement,
            recommended=i.verdict.recommended,
            action=i.action,
            rule=i.verdict.rule,
            reason=i.verdict.reason,
            rules_met=list(i.verdict.rules_met),
            monthly_cost_now=float(i.monthly_cost_now),
            monthly_cost_after=float(i.monthly_cost_after),
            product_count=i.facts.product_count,
            monthly_requests=i.facts.monthly_requests,
            storage_gb=i.facts.storage_gb,
            peak_requests_30d=i.facts.peak_requests_30d,
            peak_storage_gb=i.facts.peak_storage_gb,
            last_active_on=i.facts.last_active_on,
            active_migration_id=i.facts.active_migration_id,
        )
        for i in plan.items
        if not only_changes or i.action != "stay"
    ]
    t, costs = plan.totals, advisor.costs
    return PlacementPlanOut(
        generated_on=plan.generated_on,
        model=PlacementModel(
            trigger_products=advisor.triggers.products,
            trigger_requests_per_month=advisor.triggers.requests_per_month,
            trigger_storage_gb=advisor.triggers.storage_gb,
            shared_instance_monthly_cost=float(costs.shared_instance_monthly_cost),
            shared_instance_capacity_tenants=costs.shared_instance_capacity_tenants,
            shared_instance_capacity_gb=costs.shared_instance_capacity_gb,
            dedicated_monthly_cost=float(costs.dedicated_monthly_cost),
            dedicated_overhead_monthly_cost=float(costs.dedicated_overhead_monthly_cost),
            demote_after_days=advisor.policy.after_days,
            demote_below_fraction=advisor.policy.below_fraction,
        ),
        items=items,
        totals=PlacementTotals(
            **{name: float(value) if isinstance(value, Decimal) else value for name, value in vars(t).items()}
        ),
    )


PlanTenants = Annotated[
    list[uuid.UUID] | None,
    Query(
        max_length=MAX_PLAN_TENANTS,
        description="only these tenants (repeat the parameter); totals then as if they were the fleet",
    ),
]
OnlyChanges = Annotated[
    bool, Query(description="list only the tenants to promote or demote (totals stay the fleet's)")
]


@router.get("/placement/plan", response_model=PlacementPlanOut)
async def placement_plan(
    request: Request, tenant_id: PlanTenants = None, only_changes: OnlyChanges = False
) -> ModelResponse:
    """Per tenant: placement now, recommended placement and why, monthly cost now and after; totals
    now, after the plan and if every tenant were dedicated."""
    advisor = _advisor(request)
    plan = await advisor.plan(tenant_ids=tenant_id)
    return ModelResponse(_plan_out(advisor, plan, only_changes=only_changes))


@router.post("/placement/plan/apply", status_code=status.HTTP_202_ACCEPTED, response_model=PlacementApplyOut)
async def apply_placement_plan(
    request: Request, tenant_id: PlanTenants = None, only_changes: OnlyChanges = False
) -> ModelResponse:
    """Compute the plan and ask for exactly its moves (one migration each, reason naming the plan's
    rule); a tenant already moving is reported as `already_moving`, not an error."""
    advisor = _advisor(request)
    plan, applied = await advisor.apply(tenant_ids=tenant_id)
    out = _plan_out(advisor, plan, only_changes=only_changes)
    document = PlacementApplyOut(
        **dict(out),
        applied=[PlacementApplied(**vars(a)) for a in applied],
    )
    return ModelResponse(document, status_code=status.HTTP_202_ACCEPTED)
