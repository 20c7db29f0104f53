"""What the catalog does. Each write opens one unit of work on the tenant's placement, applies the
rules, writes rows and records their events in the outbox in the same transaction, commits (which
wakes the outbox relay for that database: tenantdb's on_commit). A refused request rolls back:
nothing written, nothing emitted. Refusals are servicekit.errors (mapped to problem details in one
place, servicekit.problems)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from events import outbox, topics
from servicekit.db import ForeignKeyViolation, UniqueViolation
from servicekit.errors import AlreadyExists, Conflict, Invalid, NotFound
from servicekit.pagination import INT4, Keyset, Page, Real, Text, Timestamp, Uuid
from tenantdb import TenantDB

from catalog import domain, repository
from catalog.repository import Row

# The listings' orders; a cursor is valid only for the listing that issued it.
NEWEST_PRODUCTS: Keyset[Row] = Keyset(
    "products", (Timestamp(), Uuid()), lambda row: (row["created_at"], row["id"])
)  # (created_at DESC, id DESC)
BEST_MATCHES: Keyset[Row] = Keyset(
    "products.search", (Real(), Uuid()), lambda row: (row["rank"], row["id"])
)  # with q: (ts_rank DESC, id DESC)
CATEGORIES: Keyset[Row] = Keyset(
    "categories", (INT4, Text(max_length=100)), lambda row: (row["position"], row["slug"])
)  # (position ASC, slug ASC); slug is unique in a tenant


def _unknown_reference(error: ForeignKeyViolation) -> Invalid:
    what = "category" if error.field == "category_id" else "parent category"
    return Invalid.of_field(error.field, f"no such {what}", "unknown_reference")


def _taken(error: UniqueViolation, what: str) -> AlreadyExists:
    return AlreadyExists(f"a {what} with this {error.field} already exists", field=error.field)


class Catalog:
    def __init__(self, tdb: TenantDB) -> None:
        self._tdb = tdb

    # --- products ---------------------------------------------------------------------------------

    async def create_products(self, tenant_id: uuid.UUID, items: Sequence[Mapping[str, Any]]) -> list[Row]:
        """All or nothing: one statement, one transaction, one product.created per product."""
        async with self._tdb.unit_of_work(tenant_id) as uow:
            try:
                rows = await repository.insert_products(uow.connection, items)
            except UniqueViolation as error:
                raise _taken(error, "product") from None
            except ForeignKeyViolation as error:
                raise _unknown_reference(error) from None
            events = [domain.product_event(domain.PRODUCT_CREATED, tenant_id, row) for row in rows]
            await outbox.record(uow.connection, topics.PRODUCTS, *events)
            await uow.commit()
        return rows

    async def get_product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> Mapping[str, Any]:
        async with self._tdb.unit_of_work(tenant_id, readonly=True) as uow:
            row = await repository.get_product(uow.driver, product_id)
        if row is None:
            raise NotFound(f"no product {product_id}")
        return row

    async def update_product(
        self, tenant_id: uuid.UUID, product_id: uuid.UUID, changes: Mapping[str, Any]
    ) -> Row:
        if not changes:
            return await self.get_product(tenant_id, product_id)
        async with self._tdb.unit_of_work(tenant_id) as uow:
            try:
                row = await repository.update_product(uow.connection, product_id, changes)
            except UniqueViolation as error:
                raise _taken(error, "product") from None
            except ForeignKeyViolation as error:
                raise _unknown_reference(error) from None
            if row is None:
                raise NotFound(f"no product {product_id}")
            event = domain.product_event(domain.PRODUCT_UPDATED, tenant_id, row)
            await outbox.record(uow.connection, topics.PRODUCTS, event)
            await uow.commit()
        return row

    async def delete_product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> None:
        async with self._tdb.unit_of_work(tenant_id) as uow:
            row = await repository.soft_delete_product(uow.connection, product_id)
            if row is None:
                raise NotFound(f"no product {product_id}")
            event = domain.product_event(domain.PRODUCT_DELETED, tenant_id, row)
            await outbox.record(uow.connection, topics.PRODUCTS, event)
            await uow.commit()

    async def list_products(
        self,
        tenant_id: uuid.UUID,
        *,
        status: str | None,
        q: str | None,
        category_id: uuid.UUID | None,
        limit: int,
        cursor: str | None,
    ) -> Page[Row]:
        """Without `q`: newest first. With `q`: best match first (ts_rank, then id), keyset-paged too,
        so a page never costs an OFFSET scan. A cursor is valid only for the listing that issued it."""
        search = q.strip() if q else ""
        keyset = BEST_MATCHES if search else NEWEST_PRODUCTS
        after = keyset.decode(cursor)  # before any I/O: a bad cursor costs no connection
        async with self._tdb.unit_of_work(tenant_id, readonly=True) as uow:
            if search:
                rows = await repository.search_products(
                    uow.connection,
                    q=search,
                    status=status,
                    category_id=category_id,
                    limit=limit + 1,
                    after=after,
                )
            else:
                rows = await repository.list_products(
                    uow.connection, status=status, category_id=category_id, limit=limit + 1, after=after
                )
        return Page(*keyset.page(rows, limit))

    # --- categories -------------------------------------------------------------------------------

    async def create_category(self, tenant_id: uuid.UUID, values: Mapping[str, Any]) -> Row:
        async with self._tdb.unit_of_work(tenant_id) as uow:
            try:
                row = await repository.insert_category(uow.connection, values)
            except UniqueViolation as error:
                raise _taken(error, "category") from None
            except ForeignKeyViolation as error:
                raise _unknown_reference(error) from None
            await uow.commit()
        return row

    async def get_category(self, tenant_id: uuid.UUID, category_id: uuid.UUID) -> Row:
        async with self._tdb.unit_of_work(tenant_id, readonly=True) as uow:
            row = await repository.get_category(uow.connection, category_id)
        if row is None:
            raise NotFound(f"no category {category_id}")
        return row

    async def update_category(
        self, tenant_id: uuid.UUID, category_id: uuid.UUID, changes: Mapping[str, Any]
    ) -> Row:
        if not changes:
            return await self.get_category(tenant_id, category_id)
        async with self._tdb.unit_of_work(tenant_id) as uow:
            parent = changes.get("parent_id")
            if parent is not None:
                await repository.lock_category_tree(uow.connection, tenant_id)
                if await repository.get_category(uow.connection, category_id) is None:
                    raise NotFound(f"no category {category_id}")
                ancestry = await repository.ancestry(uow.connection, parent)
                if not ancestry:
                    raise Invalid.of_field("parent_id", "no such parent category", "unknown_reference")
                if domain.creates_cycle(category_id, ancestry):
                    raise Conflict("the category would become its own ancestor", field="parent_id")
            try:
                row = await repository.update_category(uow.connection, category_id, changes)
            except UniqueViolation as error:
                raise _taken(error, "category") from None
            except ForeignKeyViolation as error:
                raise _unknown_reference(error) from None
            if row is None:
                raise NotFound(f"no category {category_id}")
            await uow.commit()
        return row

    async def list_categories(self, tenant_id: uuid.UUID, *, limit: int, cursor: str | None) -> Page[Row]:
        after = CATEGORIES.decode(cursor)
        async with self._tdb.unit_of_work(tenant_id, readonly=True) as uow:
            rows = await repository.list_categories(uow.connection, limit=limit + 1, after=after)
        return Page(*CATEGORIES.page(rows, limit))
