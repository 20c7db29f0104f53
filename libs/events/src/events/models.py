"""The `data` of each integration event (CONTRACT.md §4), as frozen models shared by producers and
consumers. Decimal amounts travel as strings; times as RFC 3339."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


# tenancy.tenants.v1
class TenantData(EventData):
    """tenant.created / tenant.updated / tenant.deleted: the tenant as it is after the change."""

    tenant_id: uuid.UUID
    name: str
    subdomain: str
    custom_domain: str | None
    plan: str
    status: str
    tenant_type: Literal["shared", "dedicated"]
    database_name: str | None
    placement_epoch: int
    compliance_isolation: bool
    settings: dict[str, Any]
    updated_at: datetime


class PlanChanged(EventData):
    tenant_id: uuid.UUID
    old_plan: str
    new_plan: str


class PlacementChanged(EventData):
    """tenant.placement_changed (the migrator's cutover): where the tenant lives from now on."""

    tenant_id: uuid.UUID
    tenant_type: Literal["shared", "dedicated"]
    database_name: str | None
    placement_epoch: int


# catalog.products.v1
class ProductData(EventData):
    """product.created / product.updated / product.deleted: the product after the change."""

    product_id: uuid.UUID
    name: str
    sku: str | None
    price: Decimal
    status: Literal["draft", "active", "archived"]
    deleted: bool
    category_id: uuid.UUID | None
    updated_at: datetime


# orders.orders.v1
class OrderItemData(EventData):
    product_id: uuid.UUID
    quantity: int
    unit_price: Decimal
    line_total: Decimal


class OrderPlaced(EventData):
    order_id: uuid.UUID
    order_number: str
    customer_email: str
    customer_id: uuid.UUID | None
    currency: str
    subtotal_amount: Decimal
    total_amount: Decimal
    items: list[OrderItemData]
    created_at: datetime


class OrderStatusChanged(EventData):
    order_id: uuid.UUID
    order_number: str
    old_status: str
    new_status: str
    updated_at: datetime


# usage.requests.v1
class RequestsCounted(EventData):
    """api.requests_counted: a service's count of one tenant's requests over a window.

    `counter_id` names the counting process (servicekit.counting.RequestCounter, one per process
    start) and `sequence` numbers its events, increasing; a counter makes a tenant's next event only
    after Kafka acknowledged the previous one, so per (counter, tenant) a consumer that has applied
    sequence n has seen every event up to n, and anything at or below it is a duplicate (usage keeps
    one such mark per counter and tenant instead of one row per event id). Optional: an event
    without them is deduplicated by its event id."""

    service: str
    count: int
    window_start: datetime
    window_end: datetime
    counter_id: uuid.UUID | None = None
    sequence: int | None = None
