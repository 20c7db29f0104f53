"""Tenant rules and events. No I/O."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Final

from events.envelope import Envelope
from events.models import PlanChanged, TenantData
from servicekit import errors

PRODUCER: Final = "tenancy"
SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$")
HOSTNAME: Final = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
SETTABLE_STATUSES: Final = ("active", "suspended")


class TenantRuleViolation(errors.Conflict):
    """A change the registry refuses in the tenant's current state."""


def normalize_host(host: str) -> str:
    """`Shop.Example.com:443.` → `shop.example.com`."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") or host.count(":") > 1:
        return host  # an IPv6 literal: no tenant lives there
    return host.split(":", 1)[0]


def subdomain_of(host: str, base_domain: str) -> str | None:
    """The tenant label of `<label>.<base_domain>`, or None when the host is not under it."""
    suffix = "." + base_domain.lower()
    if host.endswith(suffix):
        label = host[: -len(suffix)]
        if label and "." not in label:
            return label
    return None


def check_changeable(current_status: str) -> None:
    if current_status == "deleted":
        raise TenantRuleViolation("a deleted tenant cannot be changed")


def check_status_change(current: str, new: str) -> None:
    check_changeable(current)
    if new not in SETTABLE_STATUSES:
        raise TenantRuleViolation(f"status can be set to {' or '.join(SETTABLE_STATUSES)}; delete to remove")


def tenant_data(row: Any) -> TenantData:
    return TenantData(
        tenant_id=row.id,
        name=row.name,
        subdomain=row.subdomain,
        custom_domain=row.custom_domain,
        plan=row.plan,
        status=row.status,
        tenant_type=row.tenant_type,
        database_name=row.database_name,
        placement_epoch=row.placement_epoch,
        compliance_isolation=row.compliance_isolation,
        settings=row.settings or {},
        updated_at=row.updated_at,
    )


def tenant_event(event_type: str, row: Any) -> Envelope:
    return Envelope(
        event_type=event_type,
        tenant_id=row.id,
        producer=PRODUCER,
        data=tenant_data(row).model_dump(mode="json"),
    )


def plan_changed_event(tenant_id: uuid.UUID, old: str, new: str, at: datetime) -> Envelope:
    return Envelope(
        event_type="tenant.plan_changed",
        tenant_id=tenant_id,
        producer=PRODUCER,
        occurred_at=at,
        data=PlanChanged(tenant_id=tenant_id, old_plan=old, new_plan=new).model_dump(mode="json"),
    )
