"""`PlacementAdvisor.apply` against a fake migrator: exactly the plan's moves are asked for, in the
plan's order, each with its direction and a reason naming the rule; an active move is reported as
`already_moving`, a refusal (already there, deleted, gone) as `refused`, and neither stops the rest."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from migrator import placement
from migrator.usecases import PlacementAdvisor
from servicekit.errors import Conflict, Invalid, NotFound

from tests.unit.migrator.test_placement import POLICY, TODAY, TRIGGERS, facts, quiet


class FakeMigrator:
    def __init__(self, refusals: dict[uuid.UUID, Exception]) -> None:
        self.refusals = refusals
        self.asked: list[tuple[uuid.UUID, str | None, str | None]] = []

    async def request_migration(
        self,
        tenant_id: uuid.UUID,
        *,
        direction: str | None = None,
        reason: str | None = None,
        trigger: str | None = None,
        priority: int = 0,
    ) -> Any:
        assert trigger == "placement_plan"  # queued for the scheduler, not started at once
        self.asked.append((tenant_id, direction, reason))
        if tenant_id in self.refusals:
            raise self.refusals[tenant_id]
        return type("Row", (), {"id": uuid.uuid5(tenant_id, "migration")})()


async def test_apply_asks_for_exactly_the_moves_and_reports_each_outcome() -> None:
    promote, demote, stay = facts(plan="enterprise"), quiet(), facts()
    moving, already_there, deleted = facts(product_count=10_000), facts(compliance_isolation=True), quiet()
    gone = facts(storage_gb=11.0)
    tenants = [promote, demote, stay, moving, already_there, deleted, gone]
    fake = FakeMigrator(
        {
            moving.tenant_id: Conflict("already has an active migration", field="tenant_id"),
            already_there.tenant_id: Conflict("the tenant is already dedicated", field="direction"),
            deleted.tenant_id: Invalid.of_field("tenant_id", "the tenant is deleted", "tenant_deleted"),
            gone.tenant_id: NotFound("tenant does not exist", field="tenant_id"),
        }
    )
    advisor = PlacementAdvisor(
        None,  # type: ignore[arg-type]  # the plan is given below: no database
        fake,  # type: ignore[arg-type]
        triggers=TRIGGERS,
        policy=POLICY,
        costs=placement.CostModel(),
    )

    async def given_plan(*, tenant_ids: Any = None) -> placement.PlacementPlan:
        return placement.plan(tenants, triggers=TRIGGERS, policy=POLICY, costs=advisor.costs, today=TODAY)

    advisor.plan = given_plan  # type: ignore[method-assign]
    plan, applied = await advisor.apply()

    assert [(t, d) for t, d, _ in fake.asked] == [
        (promote.tenant_id, "to_dedicated"),
        (demote.tenant_id, "to_shared"),
        (moving.tenant_id, "to_dedicated"),
        (already_there.tenant_id, "to_dedicated"),
        (deleted.tenant_id, "to_shared"),
        (gone.tenant_id, "to_dedicated"),
    ]
    assert (
        fake.asked[0][2] == f"placement plan {TODAY.isoformat()}: plan_enterprise: promote: enterprise plan"
    )
    assert fake.asked[1][2] is not None
    assert fake.asked[1][2].startswith(f"placement plan {TODAY.isoformat()}: idle: demote: ")
    assert [(a.tenant_id, a.result) for a in applied] == [
        (promote.tenant_id, "queued"),
        (demote.tenant_id, "queued"),
        (moving.tenant_id, "already_moving"),
        (already_there.tenant_id, "refused"),
        (deleted.tenant_id, "refused"),
        (gone.tenant_id, "refused"),
    ]
    assert applied[0].migration_id == uuid.uuid5(promote.tenant_id, "migration")
    assert applied[3].error == "the tenant is already dedicated"
    assert plan.totals.promotions == 4
    assert plan.totals.demotions == 2
    assert isinstance(plan.generated_on, date)
