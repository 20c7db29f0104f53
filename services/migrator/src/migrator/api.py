"""HTTP routes of the migrator: parse, call a use case, shape the response."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request, status
from servicekit.http import usecases
from servicekit.pagination import Cursor, Limit
from sqlalchemy import Row

from migrator.placement_usecases import PlacementService
from migrator.schemas import DecisionOut, DecisionPage, MigrationCreate, MigrationOut, MigrationPage
from migrator.triggers import TriggerName
from migrator.usecases import MigratorService

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
