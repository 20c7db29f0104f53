"""What tenantdb refuses, and why. Callers map these to HTTP 404 / 403 / 503 (`retryable` ones:
503 with Retry-After)."""

from __future__ import annotations

import uuid


class TenantDBError(Exception):
    """Base of every tenantdb error."""


class TenantNotFound(TenantDBError):
    """No tenant has this id. Never answered by a silent fallback to the shared database."""

    def __init__(self, tenant_id: uuid.UUID) -> None:
        super().__init__(f"tenant {tenant_id} does not exist")
        self.tenant_id = tenant_id


class TenantUnavailable(TenantDBError):
    """The tenant exists but is suspended or deleted: no unit of work is opened for it."""

    def __init__(self, tenant_id: uuid.UUID, status: str) -> None:
        super().__init__(f"tenant {tenant_id} is {status}")
        self.tenant_id = tenant_id
        self.status = status


class TenantMoving(TenantDBError):
    """A cutover held the tenant's writes longer than the configured wait. Retryable (HTTP 503)."""

    retryable = True

    def __init__(self, tenant_id: uuid.UUID, waited_seconds: float) -> None:
        super().__init__(
            f"tenant {tenant_id} is moving between databases; retry shortly (waited {waited_seconds:.2f}s)"
        )
        self.tenant_id = tenant_id
        self.waited_seconds = waited_seconds


class PlacementMisconfigured(TenantDBError):
    """The directory names a dedicated placement tenantdb cannot reach (no database name, no secret)."""


class PoolExhausted(TenantDBError):
    """No pooled connection came free within `POOL_TIMEOUT_SECONDS`: the process is saturated.
    Retryable (HTTP 503 with Retry-After); never a 500."""

    retryable = True

    def __init__(self, pool: str, waited_seconds: float) -> None:
        super().__init__(f"no {pool} database connection free within {waited_seconds:.2f}s; retry shortly")
        self.pool = pool
        self.waited_seconds = waited_seconds


class CutoverLockTimeout(TenantDBError):
    """`Cutover.hold` (or another lock wait of the cutover) missed its deadline: writes that were in
    flight did not finish in time. Nothing was fenced or flipped; the cutover may be retried."""

    def __init__(self, tenant_id: uuid.UUID, what: str, timeout_seconds: float) -> None:
        super().__init__(f"cutover of tenant {tenant_id}: {what} not acquired within {timeout_seconds:.2f}s")
        self.tenant_id = tenant_id
        self.what = what
        self.timeout_seconds = timeout_seconds
