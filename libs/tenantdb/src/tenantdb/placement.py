"""Where a tenant's data lives, as the directory says, and how to reach a dedicated database."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import URL, make_url

from tenantdb.errors import PlacementMisconfigured

TenantType = Literal["shared", "dedicated"]
AVAILABLE_STATUS = "active"
SUSPENDED_STATUS = "suspended"  # refused to requests; consumers may still apply events (allow_suspended)


@dataclass(frozen=True, slots=True)
class Placement:
    tenant_id: uuid.UUID
    tenant_type: TenantType
    database_name: str | None
    status: str
    epoch: int

    @property
    def is_shared(self) -> bool:
        return self.tenant_type == "shared"


def dedicated_database_name(tenant_id: uuid.UUID) -> str:
    """`tenant_<32 hex digits>` (CONTRACT.md §2); also the name of the database's own role."""
    return f"tenant_{tenant_id.hex}"


def dedicated_password(secret: str, database: str) -> str:
    """The dedicated role's password, derived so that no per-tenant secret has to be stored."""
    return hmac.new(secret.encode(), database.encode(), hashlib.sha256).hexdigest()


def dedicated_url(template: str | None, shared_url: str, database: str, secret: str | None) -> URL:
    """The URL of a dedicated database. Holds a password: never log it unmasked."""
    if secret is None:
        raise PlacementMisconfigured(
            "DEDICATED_PASSWORD_SECRET is not set; dedicated tenants are unreachable"
        )
    password = dedicated_password(secret, database)
    if template is None:
        return make_url(shared_url).set(username=database, password=password, database=database)
    return make_url(template.format(database=database, role=database, password=password))
