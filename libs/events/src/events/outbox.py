"""Write integration events to the outbox, in the caller's transaction (tenantschema.outbox_ddl)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope

_INSERT = text(
    "INSERT INTO outbox (event_id, tenant_id, topic, event_type, payload) "
    "VALUES (:event_id, :tenant_id, :topic, :event_type, CAST(:payload AS jsonb))"
)


async def record(connection: AsyncConnection, topic: str, *envelopes: Envelope) -> None:
    """Add events to the outbox; they are published only if the surrounding transaction commits."""
    if not envelopes:
        return
    await connection.execute(
        _INSERT,
        [
            {
                "event_id": e.event_id,
                "tenant_id": e.tenant_id,
                "topic": topic,
                "event_type": e.event_type,
                "payload": e.model_dump_json(),
            }
            for e in envelopes
        ],
    )
