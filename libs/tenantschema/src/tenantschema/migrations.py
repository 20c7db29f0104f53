"""Run the Alembic histories from code: `platform`, `shared` and `dedicated`.

Each database has exactly one history. Alembic takes the URL from the caller (settings, devstack,
the migrator), never from an ini file. `app_role` is the runtime role that the revisions grant DML to:
`app_user` on the platform and shared databases, the tenant's own role on a dedicated database.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Literal, get_args

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tenantschema.urls import asyncpg_url

History = Literal["platform", "shared", "dedicated"]
HISTORIES: tuple[History, ...] = get_args(History)
DEFAULT_APP_ROLE = "app_user"

_ALEMBIC_DIR = Path(__file__).parent / "alembic"
# Alembic keeps the running environment in a module global (`alembic.context`): two histories run at
# once in two threads (two dedicated databases provisioned together) would share it, and one would
# run in the other's context and event loop. One at a time per process.
_ALEMBIC_RUN = threading.Lock()


def alembic_config(url: str, history: History, *, app_role: str = DEFAULT_APP_ROLE) -> Config:
    if history not in HISTORIES:
        raise ValueError(f"unknown history {history!r}; expected one of {HISTORIES}")
    config = Config()
    config.set_main_option("script_location", str(_ALEMBIC_DIR / history))
    config.attributes["url"] = url
    config.attributes["app_role"] = app_role
    return config


def upgrade(url: str, history: History, revision: str = "head", *, app_role: str = DEFAULT_APP_ROLE) -> None:
    """Upgrade the database at `url` to `revision` (blocking; see `upgrade_async` inside a loop)."""
    with _ALEMBIC_RUN:
        command.upgrade(alembic_config(url, history, app_role=app_role), revision)


def downgrade(
    url: str, history: History, revision: str = "base", *, app_role: str = DEFAULT_APP_ROLE
) -> None:
    with _ALEMBIC_RUN:
        command.downgrade(alembic_config(url, history, app_role=app_role), revision)


async def upgrade_async(
    url: str, history: History, revision: str = "head", *, app_role: str = DEFAULT_APP_ROLE
) -> None:
    """`upgrade` from async code: Alembic runs its own event loop, so it gets a thread."""
    await asyncio.to_thread(upgrade, url, history, revision, app_role=app_role)


async def downgrade_async(
    url: str, history: History, revision: str = "base", *, app_role: str = DEFAULT_APP_ROLE
) -> None:
    await asyncio.to_thread(downgrade, url, history, revision, app_role=app_role)


async def current_revision(url: str) -> str | None:
    """The revision a database is at (None when it has no Alembic history yet)."""
    engine = create_async_engine(asyncpg_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:

            def _current(sync_connection: Connection) -> str | None:
                return MigrationContext.configure(sync_connection).get_current_revision()

            return await connection.run_sync(_current)
    finally:
        await engine.dispose()


def configured_app_role() -> str:
    """The runtime role of the running migration (for GRANTs inside revisions)."""
    role = context.config.attributes.get("app_role")
    if role is None:
        role = context.get_x_argument(as_dictionary=True).get("app_role", DEFAULT_APP_ROLE)
    return str(role)


def run_env() -> None:
    """The body of every history's env.py."""
    url = context.config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise RuntimeError("no database URL: call tenantschema.migrations.upgrade(url, ...) or -x url=...")
    if context.is_offline_mode():
        context.configure(url=str(url), literal_binds=True, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(str(url)))


async def _run_online(url: str) -> None:
    engine = create_async_engine(asyncpg_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


def _run_sync(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
