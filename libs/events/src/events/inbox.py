"""Idempotent consumers: an event id is handled once per consumer, recorded with its effect."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Tenant databases: `processed_events` (tenant-scoped on the shared one); platform: `inbox`.
_TENANT = text(
    "INSERT INTO processed_events (consumer, event_id) VALUES (:consumer, :event_id) "
    "ON CONFLICT DO NOTHING RETURNING id"
)
_PLATFORM = text(
    "INSERT INTO inbox (consumer, event_id) VALUES (:consumer, :event_id) ON CONFLICT DO NOTHING RETURNING 1"
)


async def first_delivery(
    connection: AsyncConnection, consumer: str, event_id: uuid.UUID, *, platform: bool = False
) -> bool:
    """Record the event as handled by `consumer`; False when it already was (skip the effect)."""
    statement = _PLATFORM if platform else _TENANT
    row = (await connection.execute(statement, {"consumer": consumer, "event_id": event_id})).first()
    return row is not None
