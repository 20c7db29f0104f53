"""Request and response models of the tenancy API."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tenancy.domain import HOSTNAME

Plan = Literal["basic", "professional", "enterprise"]
SUBDOMAIN_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$"


def _hostname(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower().rstrip(".")
    if not HOSTNAME.match(value):
        raise ValueError("must be a host name such as shop.example.com")
    return value


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    subdomain: str = Field(pattern=SUBDOMAIN_PATTERN)
    plan: Plan = "basic"
    custom_domain: str | None = Field(default=None, max_length=255)
    settings: dict[str, Any] = Field(default_factory=dict)

    _custom_domain = field_validator("custom_domain")(_hostname)


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    plan: Plan | None = None
    status: Literal["active", "suspended"] | None = None
    custom_domain: str | None = Field(default=None, max_length=255)
    settings: dict[str, Any] | None = None
    compliance_isolation: bool | None = None

    _custom_domain = field_validator("custom_domain")(_hostname)


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    subdomain: str
    custom_domain: str | None
    plan: str
    status: str
    tenant_type: str
    database_name: str | None
    product_count: int
    monthly_requests: int
    compliance_isolation: bool
    placement_epoch: int
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class TenantPage(BaseModel):
    items: list[TenantOut]
    next_cursor: str | None


class PlanOut(BaseModel):
    id: uuid.UUID
    name: str
    price: Decimal
    features: list[str]
    limits: dict[str, Any]
    database_type: str


class PlanList(BaseModel):
    items: list[PlanOut]


class Resolution(BaseModel):
    tenant_id: uuid.UUID
    tenant_type: str
    status: str
