"""The tenancy SQL: the platform database's tenants and plans, plus the outbox, in one transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tenantschema.platform import subscription_plans, tenants


class TenantRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, values: dict[str, Any]) -> Row[Any]:
        row: Row[Any] = (
            await self.connection.execute(insert(tenants).values(**values).returning(tenants))
        ).one()
        return row

    async def get(self, tenant_id: uuid.UUID, *, for_update: bool = False) -> Row[Any] | None:
        query = select(tenants).where(tenants.c.id == tenant_id)
        if for_update:
            query = query.with_for_update()
        return (await self.connection.execute(query)).first()

    async def update(self, tenant_id: uuid.UUID, values: dict[str, Any]) -> Row[Any]:
        statement = (
            update(tenants)
            .where(tenants.c.id == tenant_id)
            .values(**values, updated_at=func.now())
            .returning(tenants)
        )
        row: Row[Any] = (await self.connection.execute(statement)).one()
        return row

    async def find(
        self,
        *,
        plan: str | None,
        tenant_type: str | None,
        status: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Row[Any]]:
        query = select(tenants)
        if plan:
            query = query.where(tenants.c.plan == plan)
        if tenant_type:
            query = query.where(tenants.c.tenant_type == tenant_type)
        query = (
            query.where(tenants.c.status == status) if status else query.where(tenants.c.status != "deleted")
        )
        if after is not None:
            query = query.where(tuple_(tenants.c.created_at, tenants.c.id) < tuple_(*after))
        query = query.order_by(tenants.c.created_at.desc(), tenants.c.id.desc()).limit(limit)
        return list((await self.connection.execute(query)).all())

    async def by_subdomain(self, subdomain: str) -> Row[Any] | None:
        return (
            await self.connection.execute(select(tenants).where(tenants.c.subdomain == subdomain))
        ).first()

    async def by_custom_domain(self, host: str) -> Row[Any] | None:
        query = select(tenants).where(func.lower(tenants.c.custom_domain) == host)
        return (await self.connection.execute(query)).first()

    async def plans(self) -> list[Row[Any]]:
        query = select(subscription_plans).order_by(subscription_plans.c.price)
        return list((await self.connection.execute(query)).all())
