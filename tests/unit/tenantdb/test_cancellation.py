"""CancelledError is never swallowed while a unit of work ends its transaction (a cancelled request
must stop, not carry on as if the ROLLBACK had finished)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tenantdb.unit_of_work import _rollback_or_invalidate


class HangingDriver:
    """An asyncpg connection stand-in inside a transaction whose ROLLBACK never answers."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    def is_closed(self) -> bool:
        return False

    def is_in_transaction(self) -> bool:
        return True

    async def execute(self, sql: str) -> None:
        self.started.set()
        await asyncio.Event().wait()


class RecordingConnection:
    def __init__(self) -> None:
        self.invalidated = False

    async def invalidate(self) -> None:
        self.invalidated = True


@pytest.mark.parametrize("failed", [False, True])
async def test_cancelled_rollback_propagates(failed: bool) -> None:
    driver, connection = HangingDriver(), RecordingConnection()
    conn: Any = connection
    task = asyncio.create_task(_rollback_or_invalidate(conn, driver, failed=failed))
    await driver.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
