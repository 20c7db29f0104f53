"""The migrator's half of the fencing protocol (README.md, "Fencing").

    async with Cutover.hold(source_owner_url, tenant_id) as cutover:   # waits out in-flight writes
        ...final delta copy...
        await cutover.fence(epoch=new_epoch, moved_to=target)            # source refuses the tenant
        await unfence(target_owner_url, tenant_id)                       # a move back: target accepts
        await flip_placement(platform_conn, tenant_id, ...)             # directory says target
    # lock released: waiting writers find the fence, re-read the directory, run on the target

The exclusive advisory lock is session-level on a connection of its own, so it lives until released
or until that connection dies (a crashed migrator frees writers, who then meet the fence or the old,
unfenced placement: never a half state).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import asyncpg
from tenantschema.urls import libpq_url


class Cutover:
    def __init__(self, connection: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
        self.connection = connection
        self.tenant_id = tenant_id

    @classmethod
    @asynccontextmanager
    async def hold(cls, source_owner_url: str, tenant_id: uuid.UUID) -> AsyncIterator[Cutover]:
        """Hold the tenant's writes on the source database (exclusive lock) for the duration."""
        connection = await asyncpg.connect(libpq_url(source_owner_url))
        try:
            await connection.execute("SELECT pg_advisory_lock(tenantdb_fence_key($1))", tenant_id)
            try:
                yield cls(connection, tenant_id)
            finally:
                await connection.execute("SELECT pg_advisory_unlock(tenantdb_fence_key($1))", tenant_id)
        finally:
            await connection.close()

    async def fence(self, *, epoch: int, moved_to: str) -> None:
        """From now on the source turns the tenant's writes (and fenced reads) away, whatever a cache says."""
        await fence(self.connection, self.tenant_id, epoch=epoch, moved_to=moved_to)


async def fence(connection: asyncpg.Connection, tenant_id: uuid.UUID, *, epoch: int, moved_to: str) -> None:
    await connection.execute(
        """INSERT INTO tenant_fences (tenant_id, epoch, moved_to) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id) DO UPDATE SET epoch = excluded.epoch, moved_to = excluded.moved_to,
                                                 fenced_at = now()""",
        tenant_id,
        epoch,
        moved_to,
    )


async def unfence(owner_url: str, tenant_id: uuid.UUID) -> None:
    """Let a database serve the tenant again (the target of a move back)."""
    connection = await asyncpg.connect(libpq_url(owner_url))
    try:
        await connection.execute("DELETE FROM tenant_fences WHERE tenant_id = $1", tenant_id)
    finally:
        await connection.close()


async def flip_placement(
    platform: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    tenant_type: Literal["shared", "dedicated"],
    database_name: str | None,
) -> int:
    """Point the directory at the new placement; returns the new placement epoch."""
    epoch: int | None = await platform.fetchval(
        """UPDATE tenants SET tenant_type = $2, database_name = $3,
                              placement_epoch = placement_epoch + 1, updated_at = now()
           WHERE id = $1 RETURNING placement_epoch""",
        tenant_id,
        tenant_type,
        database_name,
    )
    if epoch is None:
        raise LookupError(f"tenant {tenant_id} does not exist")
    return epoch
