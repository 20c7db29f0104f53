"""HTTP routes of tenancy: parse, call a use case, shape the response."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from servicekit.http import usecases
from servicekit.pagination import Cursor, Limit
from servicekit.validation import NO_NUL_PATTERN
from sqlalchemy import Row

from tenancy.schemas import PlanList, PlanOut, Resolution, TenantCreate, TenantOut, TenantPage, TenantUpdate
from tenancy.usecases import TenancyService

router = APIRouter(prefix="/v1", tags=["tenancy"])

service = usecases(TenancyService)


def _out(row: Row[Any]) -> TenantOut:
    return TenantOut.model_validate(row._mapping, from_attributes=False)


@router.post("/tenants", status_code=status.HTTP_201_CREATED)
async def create_tenant(body: TenantCreate, request: Request) -> TenantOut:
    return _out(await service(request).create(body))


@router.get("/tenants/{tenant_id}")
async def get_tenant(tenant_id: uuid.UUID, request: Request) -> TenantOut:
    return _out(await service(request).get(tenant_id))


@router.get("/tenants")
async def list_tenants(
    request: Request,
    plan: Literal["basic", "professional", "enterprise"] | None = None,
    tenant_type: Literal["shared", "dedicated"] | None = None,
    status: Literal["active", "suspended", "deleted"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TenantPage:
    page = await service(request).find(
        plan=plan, tenant_type=tenant_type, status=status, cursor=cursor, limit=limit
    )
    return TenantPage(items=[_out(r) for r in page.items], next_cursor=page.next_cursor)


@router.patch("/tenants/{tenant_id}")
async def update_tenant(tenant_id: uuid.UUID, body: TenantUpdate, request: Request) -> TenantOut:
    return _out(await service(request).update(tenant_id, body))


@router.delete("/tenants/{tenant_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_tenant(tenant_id: uuid.UUID, request: Request) -> TenantOut:
    return _out(await service(request).delete(tenant_id))


@router.get("/plans")
async def list_plans(request: Request) -> PlanList:
    return PlanList(items=[PlanOut.model_validate(r._mapping) for r in await service(request).plans()])


@router.get("/resolve")
async def resolve_host(
    request: Request,
    response: Response,
    host: Annotated[str, Query(min_length=1, max_length=300, pattern=NO_NUL_PATTERN)],
) -> Resolution:
    row = await service(request).resolve(host)
    response.headers["Cache-Control"] = "max-age=5"
    return Resolution(tenant_id=row.id, tenant_type=row.tenant_type, status=row.status)
