"""The tenancy SQL: the platform database's tenants and plans, on a unit of work's connection.

Unique violations come back as servicekit.db's `UniqueViolation` naming the column.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from servicekit.db import constraint_errors
from sqlalchemy import Row, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tenantschema.platform import subscription_plans, tenants

_UNIQUE = {"tenants_subdomain_key": "subdomain", "idx_tenants_custom_domain": "custom_domain"}


async def insert_tenant(connection: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    with constraint_errors(_UNIQUE):
        row: Row[Any] = (await connection.execute(insert(tenants).values(**values).returning(tenants))).one()
    return row


async def get_tenant(
    connection: AsyncConnection, tenant_id: uuid.UUID, *, for_update: bool = False
) -> Row[Any] | None:
    query = select(tenants).where(tenants.c.id == tenant_id)
    if for_update:
        query = query.with_for_update()
    return (await connection.execute(query)).first()


async def update_tenant(
    connection: AsyncConnection, tenant_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any]:
    statement = (
        update(tenants)
        .where(tenants.c.id == tenant_id)
        .values(**values, updated_at=func.now())
        .returning(tenants)
    )
    with constraint_errors(_UNIQUE):
        row: Row[Any] = (await connection.execute(statement)).one()
    return row


async def list_tenants(
    connection: AsyncConnection,
    *,
    plan: str | None,
    tenant_type: str | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Row[Any]]:
    """Newest first: keyset on (created_at DESC, id DESC); deleted tenants only when asked for."""
    query = select(tenants)
    if plan:
        query = query.where(tenants.c.plan == plan)
    if tenant_type:
        query = query.where(tenants.c.tenant_type == tenant_type)
    query = query.where(tenants.c.status == status) if status else query.where(tenants.c.status != "deleted")
    if after is not None:
        query = query.where(tuple_(tenants.c.created_at, tenants.c.id) < tuple_(*after))
    query = query.order_by(tenants.c.created_at.desc(), tenants.c.id.desc()).limit(limit)
    return list((await connection.execute(query)).all())


async def tenant_by_subdomain(connection: AsyncConnection, subdomain: str) -> Row[Any] | None:
    return (await connection.execute(select(tenants).where(tenants.c.subdomain == subdomain))).first()


async def tenant_by_custom_domain(connection: AsyncConnection, host: str) -> Row[Any] | None:
    query = select(tenants).where(func.lower(tenants.c.custom_domain) == host)
    return (await connection.execute(query)).first()


async def list_plans(connection: AsyncConnection) -> list[Row[Any]]:
    query = select(subscription_plans).order_by(subscription_plans.c.price)
    return list((await connection.execute(query)).all())
