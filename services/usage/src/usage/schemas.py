"""usage's response models (CONTRACT.md §3: `GET /v1/usage/{tenant_id}`, `GET /v1/usage`)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

OrderBy = Literal["requests", "products", "storage"]
# Years 1000-2999: a month with a next month that Python dates can hold.
MONTH_PATTERN = r"^[12][0-9]{3}-(0[1-9]|1[0-2])$"


class DailyUsage(BaseModel):
    date: date
    requests_count: int
    products_count: int = Field(description="products created that day")
    orders_count: int
    storage_used_gb: float


class ThresholdCrossed(BaseModel):
    metric: str
    period: str = Field(description="YYYY-MM for monthly metrics, episode-N for level metrics")
    value: float
    threshold: float
    event_id: uuid.UUID
    crossed_at: datetime
    resolved_at: datetime | None = Field(description="when a level metric fell back below")


class TenantUsage(BaseModel):
    tenant_id: uuid.UUID
    product_count: int
    monthly_requests: int = Field(description="requests in the current UTC calendar month")
    month: str = Field(description="the month `daily` and `month_requests` cover, YYYY-MM")
    month_requests: int
    daily: list[DailyUsage]
    thresholds_crossed: list[ThresholdCrossed]


class BusyTenant(BaseModel):
    tenant_id: uuid.UUID
    requests_count: int = Field(description="requests in the month")
    product_count: int
    storage_used_gb: float = Field(description="the month's highest daily storage figure")


class BusiestTenants(BaseModel):
    month: str
    order_by: OrderBy
    items: list[BusyTenant]
