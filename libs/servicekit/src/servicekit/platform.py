"""The platform database for a platform-only service (tenancy): one engine and a unit of work shaped
like tenantdb's, so every service's use cases read the same way:

    async with db.unit_of_work() as uow:
        row = await repository.get_tenant(uow.connection, tenant_id)
        await outbox.record(uow.connection, topics.TENANTS, event)
        await uow.commit()

Rolled back on exit unless committed; a committed writing unit of work calls the `on_commit`
listeners (the outbox relay's wake-up), as tenantdb's does.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tenantschema.urls import asyncpg_url

log = structlog.get_logger("servicekit.platform")

PLATFORM_SOURCE = "platform"


class PlatformDB:
    def __init__(
        self, url: str, *, application_name: str, pool_size: int = 10, max_overflow: int = 10
    ) -> None:
        self.engine: AsyncEngine = create_async_engine(
            asyncpg_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args={"server_settings": {"application_name": application_name}},
        )
        self._commit_listeners: list[Callable[[], None]] = []

    def on_commit(self, listener: Callable[[], None]) -> None:
        self._commit_listeners.append(listener)

    def unit_of_work(self, *, readonly: bool = False) -> PlatformUnitOfWork:
        return PlatformUnitOfWork(self, readonly)

    def _committed(self) -> None:
        for listener in self._commit_listeners:
            try:
                listener()
            except Exception:
                log.exception("commit listener failed")

    async def close(self) -> None:
        await self.engine.dispose()


class PlatformUnitOfWork:
    """One transaction on the platform database (READ ONLY when `readonly`: PostgreSQL refuses writes)."""

    connection: AsyncConnection

    def __init__(self, db: PlatformDB, readonly: bool) -> None:
        self._db = db
        self.readonly = readonly
        self._done = False

    async def __aenter__(self) -> PlatformUnitOfWork:
        connection = await self._db.engine.connect()
        if self.readonly:
            connection = await connection.execution_options(postgresql_readonly=True)
        self.connection = connection
        return self

    async def commit(self) -> None:
        if self._done:
            raise RuntimeError("unit of work already finished")
        self._done = True
        await self.connection.commit()
        if not self.readonly:
            self._db._committed()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        try:
            if not self._done:
                self._done = True
                await self.connection.rollback()
        finally:
            await self.connection.close()
