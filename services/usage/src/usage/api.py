"""HTTP routes of usage: parse, call a use case, shape the response."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from servicekit.http import usecases
from servicekit.pagination import Limit

from usage.schemas import MONTH_PATTERN, BusiestTenants, OrderBy, TenantUsage
from usage.usecases import UsageService

router = APIRouter(prefix="/v1", tags=["usage"])

service = usecases(UsageService)

Month = Annotated[
    str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM (UTC); default: the current month")
]


def _month(value: str | None) -> date | None:
    if value is None:
        return None
    year, month = value.split("-")
    return date(int(year), int(month), 1)  # the pattern admits only valid months


@router.get("/usage/{tenant_id}")
async def tenant_usage(tenant_id: uuid.UUID, request: Request, month: Month = None) -> TenantUsage:
    return TenantUsage.model_validate(await service(request).usage_of(tenant_id, _month(month)))


@router.get("/usage")
async def busiest_tenants(
    request: Request, month: Month = None, order_by: OrderBy = "requests", limit: Limit = 50
) -> BusiestTenants:
    found = await service(request).busiest(month=_month(month), order_by=order_by, limit=limit)
    return BusiestTenants.model_validate(found)
