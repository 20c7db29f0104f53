"""HTTP routes of tenancy: parse, call a use case, shape the response."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from servicekit.pagination import Cursor, Limit, page
from servicekit.validation import NO_NUL_PATTERN
from sqlalchemy import Row

from tenancy.schemas import PlanList, PlanOut, Resolution, TenantCreate, TenantOut, TenantPage, TenantUpdate
from tenancy.usecases import TenancyService

router = APIRouter(prefix="/v1", tags=["tenancy"])


async def get_service(request: Request) -> TenancyService:
    service: TenancyService = request.app.state.service
    return service


Service = Annotated[TenancyService, Depends(get_service)]


def _out(row: Row[Any]) -> TenantOut:
    return TenantOut.model_validate(row._mapping, from_attributes=False)


@router.post("/tenants", status_code=status.HTTP_201_CREATED)
async def create_tenant(body: TenantCreate, service: Service) -> TenantOut:
    return _out(await service.create(body))


@router.get("/tenants/{tenant_id}")
async def get_tenant(tenant_id: uuid.UUID, service: Service) -> TenantOut:
    return _out(await service.get(tenant_id))


@router.get("/tenants")
async def list_tenants(
    service: Service,
    plan: Literal["basic", "professional", "enterprise"] | None = None,
    tenant_type: Literal["shared", "dedicated"] | None = None,
    status: Literal["active", "suspended", "deleted"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TenantPage:
    rows = await service.find(plan=plan, tenant_type=tenant_type, status=status, cursor=cursor, limit=limit)
    items, next_cursor = page(rows, limit, key=lambda r: (r.created_at, r.id))
    return TenantPage(items=[_out(r) for r in items], next_cursor=next_cursor)


@router.patch("/tenants/{tenant_id}")
async def update_tenant(tenant_id: uuid.UUID, body: TenantUpdate, service: Service) -> TenantOut:
    return _out(await service.update(tenant_id, body))


@router.delete("/tenants/{tenant_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_tenant(tenant_id: uuid.UUID, service: Service) -> TenantOut:
    return _out(await service.delete(tenant_id))


@router.get("/plans")
async def list_plans(service: Service) -> PlanList:
    return PlanList(items=[PlanOut.model_validate(r._mapping) for r in await service.plans()])


@router.get("/resolve")
async def resolve_host(
    service: Service,
    response: Response,
    host: Annotated[str, Query(min_length=1, max_length=300, pattern=NO_NUL_PATTERN)],
) -> Resolution:
    row = await service.resolve(host)
    response.headers["Cache-Control"] = "max-age=5"
    return Resolution(tenant_id=row.id, tenant_type=row.tenant_type, status=row.status)
