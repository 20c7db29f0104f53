"""Request and response models of the tenancy API."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from servicekit.validation import JsonObject, Text, optional

from tenancy.domain import HOSTNAME

Plan = Literal["basic", "professional", "enterprise"]
SUBDOMAIN_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$"
# Lengths are the columns' (tenantschema.platform.tenants).
Name = Annotated[Text, Field(min_length=1, max_length=255)]
Subdomain = Annotated[str, Field(min_length=1, max_length=50, pattern=SUBDOMAIN_PATTERN)]
# A host name (domain.HOSTNAME, checked after lower-casing; a trailing dot is dropped), at most 253
# characters (the column holds 255).
HOSTNAME_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\.?$"
CustomDomain = Annotated[str, Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]


def _hostname(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower().rstrip(".")
    if not HOSTNAME.match(value):
        raise ValueError("must be a host name such as shop.example.com")
    return value


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    subdomain: Subdomain
    plan: Plan = "basic"
    custom_domain: CustomDomain | None = None
    settings: JsonObject = Field(default_factory=dict)

    _custom_domain = field_validator("custom_domain")(_hostname)


class TenantUpdate(BaseModel):
    """Only the fields present are changed. `custom_domain: null` removes the domain; the other fields
    cannot be null (their columns are NOT NULL), so the schema does not offer it: left out = unchanged."""

    model_config = ConfigDict(extra="forbid")

    name: Name = optional()
    plan: Plan = optional()
    status: Literal["active", "suspended"] = optional()
    custom_domain: CustomDomain | None = None
    settings: JsonObject = optional()
    compliance_isolation: bool = optional()

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
