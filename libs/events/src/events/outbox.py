"""Write integration events to the outbox, in the caller's transaction (tenantschema.outbox_ddl).

Each row first takes its tenant's transaction-level advisory lock (held until COMMIT or ROLLBACK), in
the same statement as the INSERT: a tenant's concurrent transactions therefore draw their `seq` values
in the order they commit, so a relay that sees a tenant's row `seq = n` already sees every earlier row
of that tenant. The cost is that one tenant's writing transactions are serialized from their outbox
insert to their commit (other tenants are not affected; two tenants whose keys collide, one chance in
2^64, only wait for each other). Rows are inserted tenant by tenant in a fixed order, so two
transactions recording events of the same tenants cannot deadlock on these locks.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope

_INSERT = text(
    "WITH tenant_lock AS MATERIALIZED ("
    "SELECT pg_advisory_xact_lock(hashtextextended('outbox:' || CAST(:tenant_id AS uuid)::text, 0))"
    ") INSERT INTO outbox (event_id, tenant_id, topic, event_type, payload) "
    "SELECT CAST(:event_id AS uuid), CAST(:tenant_id AS uuid), :topic, :event_type, CAST(:payload AS jsonb) "
    "FROM tenant_lock"
)


async def record(connection: AsyncConnection, topic: str, *envelopes: Envelope) -> None:
    """Add events to the outbox; they are published only if the surrounding transaction commits.

    A tenant's events keep their given order; several tenants' are grouped by tenant id (lock order)."""
    if not envelopes:
        return
    ordered = sorted(envelopes, key=lambda e: str(e.tenant_id))  # stable: a tenant's order is kept
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
            for e in ordered
        ],
    )


# The same insert for code on a plain asyncpg connection (the migrator's cutover transaction, which
# flips the directory with tenantdb.fencing on asyncpg and must publish in the same transaction).
# The payload goes as text, cast by the server: a jsonb codec on the connection would encode the
# already-serialized envelope a second time (a JSON string instead of the object).
_INSERT_ASYNCPG = (
    "WITH tenant_lock AS MATERIALIZED ("
    "SELECT pg_advisory_xact_lock(hashtextextended('outbox:' || $2::uuid::text, 0))"
    ") INSERT INTO outbox (event_id, tenant_id, topic, event_type, payload) "
    "SELECT $1::uuid, $2::uuid, $3, $4, $5::text::jsonb FROM tenant_lock"
)


async def record_on(connection: asyncpg.Connection, topic: str, *envelopes: Envelope) -> None:
    """`record` on an asyncpg connection (inside the caller's transaction)."""
    ordered = sorted(envelopes, key=lambda e: str(e.tenant_id))
    await connection.executemany(
        _INSERT_ASYNCPG,
        [(e.event_id, e.tenant_id, topic, e.event_type, e.model_dump_json()) for e in ordered],
    )
