"""What tenancy does: each use case is one platform-database transaction that changes tenants and
records its events in the outbox; the relay publishes them after commit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from events import topics
from events.envelope import Envelope
from events.outbox import record
from events.relay import OutboxRelay
from servicekit.db import violated_constraint
from servicekit.pagination import decode_cursor
from servicekit.problems import Conflict, NotFound
from sqlalchemy import Row, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tenancy import domain
from tenancy.repository import TenantRepository
from tenancy.schemas import TenantCreate, TenantUpdate

_CONFLICTS = {
    "tenants_subdomain_key": "subdomain is taken",
    "idx_tenants_custom_domain": "custom_domain is used by another tenant",
}


class UnitOfWork:
    def __init__(self, repository: TenantRepository) -> None:
        self.tenants = repository
        self.events: list[Envelope] = []


class TenancyService:
    def __init__(self, engine: AsyncEngine, relay: OutboxRelay | None, *, base_domain: str) -> None:
        self._engine = engine
        self._relay = relay
        self._base_domain = base_domain

    @asynccontextmanager
    async def _unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """One transaction; the events collected are written to the outbox before it commits."""
        try:
            async with self._engine.begin() as connection:
                uow = UnitOfWork(TenantRepository(connection))
                yield uow
                await record(connection, topics.TENANTS, *uow.events)
        except IntegrityError as error:
            constraint = violated_constraint(error)
            if constraint is None:
                raise
            raise Conflict(_CONFLICTS.get(constraint, "conflicts with an existing tenant")) from None
        if uow.events and self._relay is not None:
            self._relay.notify()

    async def create(self, body: TenantCreate) -> Row[Any]:
        async with self._unit_of_work() as uow:
            row = await uow.tenants.add(body.model_dump())
            uow.events.append(domain.tenant_event("tenant.created", row))
        return row

    async def get(self, tenant_id: uuid.UUID) -> Row[Any]:
        async with self._engine.connect() as connection:
            row = await TenantRepository(connection).get(tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id} does not exist")
        return row

    async def find(
        self, *, plan: str | None, tenant_type: str | None, status: str | None, cursor: str | None, limit: int
    ) -> list[Row[Any]]:
        after = decode_cursor(cursor) if cursor else None
        async with self._engine.connect() as connection:
            return await TenantRepository(connection).find(
                plan=plan, tenant_type=tenant_type, status=status, after=after, limit=limit + 1
            )

    async def update(self, tenant_id: uuid.UUID, body: TenantUpdate) -> Row[Any]:
        changes = body.model_dump(exclude_unset=True)
        async with self._unit_of_work() as uow:
            current = await uow.tenants.get(tenant_id, for_update=True)
            if current is None:
                raise NotFound(f"tenant {tenant_id} does not exist")
            try:
                if current.status == "deleted":
                    raise domain.TenantRuleViolation("a deleted tenant cannot be changed")
                if "status" in changes:
                    domain.check_status_change(current.status, changes["status"])
            except domain.TenantRuleViolation as error:
                raise Conflict(str(error)) from None
            changes = {k: v for k, v in changes.items() if getattr(current, k) != v}
            if not changes:
                return current
            row = await uow.tenants.update(tenant_id, changes)
            uow.events.append(domain.tenant_event("tenant.updated", row))
            if "plan" in changes:
                uow.events.append(
                    domain.plan_changed_event(tenant_id, current.plan, row.plan, row.updated_at)
                )
        return row

    async def delete(self, tenant_id: uuid.UUID) -> Row[Any]:
        """Soft delete: the tenant is refused everywhere from now on; its data stays until purged."""
        async with self._unit_of_work() as uow:
            current = await uow.tenants.get(tenant_id, for_update=True)
            if current is None:
                raise NotFound(f"tenant {tenant_id} does not exist")
            if current.status == "deleted":
                return current
            row = await uow.tenants.update(tenant_id, {"status": "deleted", "deleted_at": func.now()})
            uow.events.append(domain.tenant_event("tenant.deleted", row))
        return row

    async def plans(self) -> list[Row[Any]]:
        async with self._engine.connect() as connection:
            return await TenantRepository(connection).plans()

    async def resolve(self, host: str) -> Row[Any]:
        """What an edge gateway asks: which tenant serves this host?"""
        name = domain.normalize_host(host)
        label = domain.subdomain_of(name, self._base_domain)
        async with self._engine.connect() as connection:
            repository = TenantRepository(connection)
            row = await (repository.by_subdomain(label) if label else repository.by_custom_domain(name))
        if row is None or row.status == "deleted":
            raise NotFound(f"no tenant serves {name}")
        return row
