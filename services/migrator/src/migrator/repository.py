"""The migrator's SQL on the platform database: `tenant_migrations` and the directory columns of
`tenants`, on a unit of work's connection. A second active migration of a tenant is refused by the
partial unique index `idx_migrations_one_active_per_tenant` (servicekit.db's UniqueViolation)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from servicekit.db import constraint_errors
from sqlalchemy import Row, Select, func, insert, select, text, tuple_, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from tenantschema.platform import tenant_migrations, tenants

_UNIQUE = {"idx_migrations_one_active_per_tenant": "tenant_id"}
_ACTIVE = ("pending", "in_progress")
_DIRECTORY = ("id", "status", "tenant_type", "database_name", "placement_epoch")


async def get_tenant(connection: AsyncConnection, tenant_id: uuid.UUID) -> Row[Any] | None:
    query = select(
        tenants.c.id,
        tenants.c.status,
        tenants.c.tenant_type,
        tenants.c.database_name,
        tenants.c.placement_epoch,
    ).where(tenants.c.id == tenant_id)
    # Only the columns migrator_service may read (column grants): a Row of five, typed as any row.
    return cast("Row[Any] | None", (await connection.execute(query)).first())


async def insert_migration(connection: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    with constraint_errors(_UNIQUE):
        statement = insert(tenant_migrations).values(**values).returning(tenant_migrations)
        row: Row[Any] = (await connection.execute(statement)).one()
    return row


async def get_migration(
    connection: AsyncConnection, migration_id: uuid.UUID, *, for_update: bool = False
) -> Row[Any] | None:
    query = select(tenant_migrations).where(tenant_migrations.c.id == migration_id)
    if for_update:
        query = query.with_for_update()
    return (await connection.execute(query)).first()


async def list_migrations(
    connection: AsyncConnection,
    *,
    tenant_id: uuid.UUID | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Row[Any]]:
    """Newest first: keyset on (started_at DESC, id DESC)."""
    query = select(tenant_migrations)
    if tenant_id is not None:
        query = query.where(tenant_migrations.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(tenant_migrations.c.status == status)
    if after is not None:
        query = query.where(tuple_(tenant_migrations.c.started_at, tenant_migrations.c.id) < tuple_(*after))
    query = query.order_by(tenant_migrations.c.started_at.desc(), tenant_migrations.c.id.desc()).limit(limit)
    return list((await connection.execute(query)).all())


async def active_migration_ids(connection: AsyncConnection) -> list[uuid.UUID]:
    query = (
        select(tenant_migrations.c.id)
        .where(tenant_migrations.c.status.in_(_ACTIVE))
        .order_by(tenant_migrations.c.started_at)
    )
    return list((await connection.execute(query)).scalars())


async def update_migration(
    connection: AsyncConnection,
    migration_id: uuid.UUID,
    values: dict[str, Any],
    *,
    progress: dict[str, Any] | None = None,
) -> Row[Any]:
    """Set columns; `progress` is merged into the stored object (top-level keys replaced)."""
    changes: dict[str, Any] = {**values, "updated_at": func.now()}
    if progress is not None:
        changes["progress"] = tenant_migrations.c.progress.op("||")(type_coerce(progress, JSONB))
    statement = (
        update(tenant_migrations)
        .where(tenant_migrations.c.id == migration_id)
        .values(**changes)
        .returning(tenant_migrations)
    )
    row: Row[Any] = (await connection.execute(statement)).one()
    return row


async def request_cancel(connection: AsyncConnection, migration_id: uuid.UUID) -> Row[Any] | None:
    """Mark a running migration for cancellation, only while it is before its cutover (the runner's
    step into the cutover takes the same row lock and checks the mark)."""
    statement = text(
        "UPDATE tenant_migrations SET progress = progress || '{\"cancel_requested\": true}'::jsonb, "
        "updated_at = now() WHERE id = :id AND status = 'in_progress' "
        "AND phase IN ('provision', 'capture', 'copy', 'catch_up', 'verify') RETURNING *"
    )
    return (await connection.execute(statement, {"id": migration_id})).first()


def ended_to_dedicated_without_placement_query() -> Select[Any]:
    """Moves to a dedicated database that failed or were cancelled while the tenant is not placed
    there (their target, if it still exists, is an orphan)."""
    return (
        select(tenant_migrations.c.id, tenant_migrations.c.tenant_id)
        .join(tenants, tenants.c.id == tenant_migrations.c.tenant_id)
        .where(
            tenant_migrations.c.migration_type == "shared_to_dedicated",
            tenant_migrations.c.status.in_(("failed", "cancelled")),
            tenants.c.tenant_type == "shared",
        )
    )
