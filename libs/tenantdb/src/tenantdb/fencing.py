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

from tenantdb.errors import CutoverLockTimeout

# Every lock wait of the cutover has a deadline. Holding the tenant waits for its in-flight writes
# (each bounded by the services' statement_timeout, 5 s): 10 s is ample, and past it the migrator
# backs off and retries rather than queueing writers behind it indefinitely.
HOLD_TIMEOUT_SECONDS = 10.0
# The fence, unfence and flip are single-row writes; a lock on them is held by a short transaction.
STATEMENT_LOCK_TIMEOUT_SECONDS = 5.0
CUTOVER_APPLICATION_NAME = "migrator:cutover"


def _ms(seconds: float) -> str:
    return f"{max(1, int(seconds * 1000))}ms"


class Cutover:
    def __init__(self, connection: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
        self.connection = connection
        self.tenant_id = tenant_id

    @staticmethod
    async def connect(
        source_owner_url: str,
        *,
        wait_seconds: float = HOLD_TIMEOUT_SECONDS,
        application_name: str = CUTOVER_APPLICATION_NAME,
    ) -> asyncpg.Connection:
        """The connection a hold runs on, for a caller that opens it ahead of the hold (a connection
        is a TCP and SCRAM exchange: milliseconds a move need not spend between verify and freeze)."""
        return await asyncpg.connect(
            libpq_url(source_owner_url),
            timeout=wait_seconds,
            server_settings={"application_name": application_name, "lock_timeout": _ms(wait_seconds)},
        )

    @classmethod
    @asynccontextmanager
    async def hold(
        cls,
        source_owner_url: str,
        tenant_id: uuid.UUID,
        *,
        wait_seconds: float = HOLD_TIMEOUT_SECONDS,
        application_name: str = CUTOVER_APPLICATION_NAME,
        connection: asyncpg.Connection | None = None,
    ) -> AsyncIterator[Cutover]:
        """Hold the tenant's writes on the source database (exclusive lock) for the duration.

        Waits at most `wait_seconds` for the lock (in-flight writes finishing), then raises
        CutoverLockTimeout having taken nothing: queued writers go on, the cutover can be retried.
        `connection`, from `Cutover.connect` with the same arguments, is used instead of a new one;
        either way the hold closes it when it ends.
        """
        if connection is None or connection.is_closed():
            connection = await cls.connect(
                source_owner_url, wait_seconds=wait_seconds, application_name=application_name
            )
        try:
            try:
                await connection.execute("SELECT pg_advisory_lock(tenantdb_fence_key($1))", tenant_id)
            except asyncpg.LockNotAvailableError:
                raise CutoverLockTimeout(tenant_id, "the exclusive fence lock", wait_seconds) from None
            # What runs inside the hold (fence, delta copy) waits on row locks at most this long.
            await connection.execute(f"SET lock_timeout = '{_ms(STATEMENT_LOCK_TIMEOUT_SECONDS)}'")
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
    connection = await asyncpg.connect(
        libpq_url(owner_url),
        timeout=STATEMENT_LOCK_TIMEOUT_SECONDS,
        server_settings={
            "application_name": CUTOVER_APPLICATION_NAME,
            "lock_timeout": _ms(STATEMENT_LOCK_TIMEOUT_SECONDS),
        },
    )
    try:
        await connection.execute("DELETE FROM tenant_fences WHERE tenant_id = $1", tenant_id)
    except asyncpg.LockNotAvailableError:
        raise CutoverLockTimeout(
            tenant_id, "the target's fence row", STATEMENT_LOCK_TIMEOUT_SECONDS
        ) from None
    finally:
        await connection.close()


@asynccontextmanager
async def _directory_row_wait(
    platform: asyncpg.Connection, tenant_id: uuid.UUID, lock_timeout: float
) -> AsyncIterator[None]:
    """Statements on the tenant's directory row that wait at most `lock_timeout` seconds for its lock
    (CutoverLockTimeout); inside a caller's transaction the timeout holds until that one ends."""
    await platform.execute("SELECT set_config('lock_timeout', $1, true)", _ms(lock_timeout))
    try:
        yield
    except asyncpg.LockNotAvailableError:
        raise CutoverLockTimeout(tenant_id, "the directory row", lock_timeout) from None


async def lock_directory_row(
    platform: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    lock_timeout: float = STATEMENT_LOCK_TIMEOUT_SECONDS,
) -> int:
    """Lock the tenant's directory row inside the caller's transaction (the one that will flip it)
    and return its placement epoch. Taken before `Cutover.hold`, so that a transaction holding the
    row (usage updating the tenant's counters, tenancy the tenant) is waited for while the tenant is
    still served, not inside the freeze; anything that wants the row afterwards waits for the freeze.
    Waits at most `lock_timeout` seconds (CutoverLockTimeout)."""
    async with _directory_row_wait(platform, tenant_id, lock_timeout):
        epoch: int | None = await platform.fetchval(
            "SELECT placement_epoch FROM tenants WHERE id = $1 FOR NO KEY UPDATE", tenant_id
        )
    if epoch is None:
        raise LookupError(f"tenant {tenant_id} does not exist")
    return epoch


async def flip_placement(
    platform: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    tenant_type: Literal["shared", "dedicated"],
    database_name: str | None,
    lock_timeout: float = STATEMENT_LOCK_TIMEOUT_SECONDS,
) -> int:
    """Point the directory at the new placement; returns the new placement epoch.

    The tenant's row lock (tenancy updating the tenant) is waited on at most `lock_timeout` seconds
    (CutoverLockTimeout). Inside a caller's transaction the timeout holds until that transaction ends.
    """
    async with platform.transaction(), _directory_row_wait(platform, tenant_id, lock_timeout):
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
