"""A ready FastStream subscriber that keeps a process's directory cache honest.

Every process must see every placement change, so it reads `tenancy.tenants.v1` without a consumer
group (no shared offsets, from the latest message on): a restart starts with an empty cache anyway.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from events import topics
from events.models import PlacementChanged
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from tenantdb.directory import TenantDirectory

log = structlog.get_logger("tenantdb.subscriber")

PLACEMENT_CHANGED = "tenant.placement_changed"
# Events after which a cached placement (type, database, status) may be wrong.
INVALIDATING_EVENTS = frozenset(
    {PLACEMENT_CHANGED, "tenant.updated", "tenant.deleted", "tenant.plan_changed"}
)


def handle_tenant_event(directory: TenantDirectory, body: Any) -> bool:
    """Invalidate the tenant's entry if the event may change its placement; True when it did.

    `tenant.created` only drops the id from the unknown-tenant cache (the directory's negative
    entries), so a tenant asked for just before it existed is found at once."""
    if not isinstance(body, dict) or body.get("event_type") not in INVALIDATING_EVENTS | {"tenant.created"}:
        return False
    try:
        tenant_id = uuid.UUID(str(body["tenant_id"]))
    except (KeyError, ValueError):
        log.warning("tenant event without a valid tenant_id ignored", event_id=body.get("event_id"))
        return False
    if body["event_type"] == "tenant.created":
        return directory.forget_unknown(tenant_id)
    directory.invalidate(tenant_id, epoch=_epoch(body), reason="event")
    return True


def _epoch(body: dict[str, Any]) -> int | None:
    """The placement epoch the event announces, if it carries a valid one: reads of an older row are
    then not cached. Without one the entry is still dropped (dropping is always safe)."""
    data = body.get("data")
    if not isinstance(data, dict):
        return None
    if body.get("event_type") == PLACEMENT_CHANGED:
        try:
            return PlacementChanged.model_validate(data).placement_epoch
        except ValidationError:
            log.warning("tenant.placement_changed with malformed data", event_id=body.get("event_id"))
            return None
    epoch = data.get("placement_epoch")  # tenant.updated and friends carry TenantData
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def mount_directory_invalidation(broker: KafkaBroker, directory: TenantDirectory) -> None:
    # Without a group there is no offset to commit: the broker-wide AckPolicy.ACK would try and fail
    # ("Requires group_id") on every message, so this subscriber never acknowledges.
    @broker.subscriber(
        topics.TENANTS,
        group_id=None,
        auto_offset_reset="latest",
        ack_policy=AckPolicy.MANUAL,
        title="tenantdb-directory",
    )
    async def invalidate_placement(body: Any) -> None:
        handle_tenant_event(directory, body)
