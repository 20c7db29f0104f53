"""What tenancy does: each use case is one platform-database unit of work that changes tenants and
records its events in the outbox in the same transaction; committing wakes the relay. Refusals are
servicekit.errors (mapped to problem details in one place, servicekit.problems)."""

from __future__ import annotations

import uuid
from typing import Any

from events import topics
from events.outbox import record
from servicekit.db import UniqueViolation
from servicekit.errors import AlreadyExists, NotFound
from servicekit.pagination import Keyset, Page, Timestamp, Uuid
from servicekit.platform import PlatformDB
from sqlalchemy import Row, func

from tenancy import domain, repository
from tenancy.schemas import TenantCreate, TenantUpdate

# Newest first: (created_at DESC, id DESC).
NEWEST_TENANTS: Keyset[Row[Any]] = Keyset(
    "tenants", (Timestamp(), Uuid()), lambda row: (row.created_at, row.id)
)

_TAKEN = {"subdomain": "subdomain is taken", "custom_domain": "custom_domain is used by another tenant"}


def _taken(error: UniqueViolation) -> AlreadyExists:
    return AlreadyExists(_TAKEN.get(error.field, f"{error.field} is taken"), field=error.field)


class TenancyService:
    def __init__(self, db: PlatformDB, *, base_domain: str) -> None:
        self._db = db
        self._base_domain = base_domain

    async def create(self, body: TenantCreate) -> Row[Any]:
        async with self._db.unit_of_work() as uow:
            try:
                row = await repository.insert_tenant(uow.connection, body.model_dump())
            except UniqueViolation as error:
                raise _taken(error) from None
            await record(uow.connection, topics.TENANTS, domain.tenant_event("tenant.created", row))
            await uow.commit()
        return row

    async def get(self, tenant_id: uuid.UUID) -> Row[Any]:
        async with self._db.unit_of_work(readonly=True) as uow:
            row = await repository.get_tenant(uow.connection, tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id} does not exist")
        return row

    async def find(
        self, *, plan: str | None, tenant_type: str | None, status: str | None, cursor: str | None, limit: int
    ) -> Page[Row[Any]]:
        after = NEWEST_TENANTS.decode(cursor)
        async with self._db.unit_of_work(readonly=True) as uow:
            rows = await repository.list_tenants(
                uow.connection,
                plan=plan,
                tenant_type=tenant_type,
                status=status,
                after=after,
                limit=limit + 1,
            )
        return Page(*NEWEST_TENANTS.page(rows, limit))

    async def update(self, tenant_id: uuid.UUID, body: TenantUpdate) -> Row[Any]:
        changes = body.model_dump(exclude_unset=True)
        async with self._db.unit_of_work() as uow:
            current = await repository.get_tenant(uow.connection, tenant_id, for_update=True)
            if current is None:
                raise NotFound(f"tenant {tenant_id} does not exist")
            domain.check_changeable(current.status)
            if "status" in changes:
                domain.check_status_change(current.status, changes["status"])
            changes = {k: v for k, v in changes.items() if getattr(current, k) != v}
            if not changes:
                return current
            try:
                row = await repository.update_tenant(uow.connection, tenant_id, changes)
            except UniqueViolation as error:
                raise _taken(error) from None
            events = [domain.tenant_event("tenant.updated", row)]
            if "plan" in changes:
                events.append(domain.plan_changed_event(tenant_id, current.plan, row.plan, row.updated_at))
            await record(uow.connection, topics.TENANTS, *events)
            await uow.commit()
        return row

    async def delete(self, tenant_id: uuid.UUID) -> Row[Any]:
        """Soft delete: the tenant is refused everywhere from now on; its data stays until purged."""
        async with self._db.unit_of_work() as uow:
            current = await repository.get_tenant(uow.connection, tenant_id, for_update=True)
            if current is None:
                raise NotFound(f"tenant {tenant_id} does not exist")
            if current.status == "deleted":
                return current
            row = await repository.update_tenant(
                uow.connection, tenant_id, {"status": "deleted", "deleted_at": func.now()}
            )
            await record(uow.connection, topics.TENANTS, domain.tenant_event("tenant.deleted", row))
            await uow.commit()
        return row

    async def plans(self) -> list[Row[Any]]:
        async with self._db.unit_of_work(readonly=True) as uow:
            return await repository.list_plans(uow.connection)

    async def resolve(self, host: str) -> Row[Any]:
        """What an edge gateway asks: which tenant serves this host?"""
        name = domain.normalize_host(host)
        label = domain.subdomain_of(name, self._base_domain)
        async with self._db.unit_of_work(readonly=True) as uow:
            if label:
                row = await repository.tenant_by_subdomain(uow.connection, label)
            else:
                row = await repository.tenant_by_custom_domain(uow.connection, name)
        if row is None or row.status == "deleted":
            raise NotFound(f"no tenant serves {name}")
        return row
