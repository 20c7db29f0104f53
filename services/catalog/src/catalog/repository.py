"""The catalog's SQL: SQLAlchemy Core on tenantschema's dedicated-shaped tables.

The same statements run on both placements: on the shared database `tenant_id` is filled by its
default from the transaction's tenant context and Row Level Security filters every statement.
Constraint violations come back as servicekit.db's `UniqueViolation` / `ForeignKeyViolation` naming
the column.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import asyncpg
from servicekit.db import constraint_errors
from sqlalchemy import (
    REAL,
    ColumnElement,
    Select,
    bindparam,
    func,
    insert,
    literal_column,
    null,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from tenantschema.tables import product_categories as categories
from tenantschema.tables import products

Row = Mapping[Any, Any]  # a RowMapping, or a plain dict from the driver

PRODUCT_COLUMNS = tuple(products.c)
CATEGORY_COLUMNS = tuple(categories.c)
_JSON_COLUMNS = frozenset({"inventory", "seo", "attributes"})

# Exactly the expression of the GIN index `idx_products_search`, so the planner can use it.
SEARCH_DOCUMENT: ColumnElement[Any] = literal_column(
    "to_tsvector('simple', coalesce(products.name, '') || ' ' || coalesce(products.description, ''))"
)


# Constraint names on either placement (shared ones are tenant-scoped: `<table>_tenant_id_<col>_key`).
_UNIQUE = {
    "products_sku_key": "sku",
    "products_tenant_id_sku_key": "sku",
    "product_categories_slug_key": "slug",
    "product_categories_tenant_id_slug_key": "slug",
}
_FOREIGN = {"products_category_id_fkey": "category_id", "product_categories_parent_id_fkey": "parent_id"}


def _constraint_errors() -> AbstractContextManager[None]:
    """Violations of the constraints above as servicekit.db's UniqueViolation / ForeignKeyViolation."""
    return constraint_errors(_UNIQUE, _FOREIGN)


def _bumped_updated_at(column: Any) -> ColumnElement[Any]:
    # Strictly later than the version it replaces, so consumers can order versions by updated_at
    # (the row lock of UPDATE serialises writers of one row).
    return func.greatest(func.clock_timestamp(), column + literal_column("interval '1 microsecond'"))


def _json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    # None in a JSONB column is SQL NULL, not the JSON document `null`.
    return {k: (null() if k in _JSON_COLUMNS and v is None else v) for k, v in values.items()}


# --- products -------------------------------------------------------------------------------------


async def insert_products(connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Insert rows (all with the same keys) in one statement; returns them in the given order."""
    statement = insert(products).returning(*PRODUCT_COLUMNS, sort_by_parameter_order=True)
    with _constraint_errors():
        if len(rows) == 1:
            result = await connection.execute(statement.values(_json_values(rows[0])))
        else:
            result = await connection.execute(statement, [_json_values(r) for r in rows])
    return [r._mapping for r in result.all()]


# Built once: a statement built per call costs more Python than the query's round trip.
_GET_PRODUCT = select(*PRODUCT_COLUMNS).where(
    products.c.id == bindparam("product_id"), products.c.deleted_at.is_(None)
)


# The hottest read runs on the unit of work's asyncpg connection: SQLAlchemy's per-execution work
# (cache key, result metadata, row processing) costs about as much as the round trip itself.
_GET_PRODUCT_SQL = str(_GET_PRODUCT.compile(dialect=asyncpg_dialect()))  # type: ignore[no-untyped-call]


async def get_product(driver: asyncpg.Connection, product_id: uuid.UUID) -> Mapping[str, Any] | None:
    row = await driver.fetchrow(_GET_PRODUCT_SQL, product_id)
    return None if row is None else dict(row.items())


async def update_product(
    connection: AsyncConnection, product_id: uuid.UUID, changes: Mapping[str, Any]
) -> Row | None:
    statement = (
        update(products)
        .where(products.c.id == product_id, products.c.deleted_at.is_(None))
        .values(**_json_values(changes), updated_at=_bumped_updated_at(products.c.updated_at))
        .returning(*PRODUCT_COLUMNS)
    )
    with _constraint_errors():
        row = (await connection.execute(statement)).first()
    return row._mapping if row is not None else None


async def soft_delete_product(connection: AsyncConnection, product_id: uuid.UUID) -> Row | None:
    statement = (
        update(products)
        .where(products.c.id == product_id, products.c.deleted_at.is_(None))
        .values(deleted_at=func.clock_timestamp(), updated_at=_bumped_updated_at(products.c.updated_at))
        .returning(*PRODUCT_COLUMNS)
    )
    row = (await connection.execute(statement)).first()
    return row._mapping if row is not None else None


def _product_filters(
    statement: Select[Any], status: str | None, category_id: uuid.UUID | None
) -> Select[Any]:
    statement = statement.where(products.c.deleted_at.is_(None))
    if status is not None:
        statement = statement.where(products.c.status == status)
    if category_id is not None:
        statement = statement.where(products.c.category_id == category_id)
    return statement


async def list_products(
    connection: AsyncConnection,
    *,
    status: str | None,
    category_id: uuid.UUID | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Row]:
    """Newest first: keyset on (created_at DESC, id DESC)."""
    statement = _product_filters(select(*PRODUCT_COLUMNS), status, category_id)
    if after is not None:
        statement = statement.where(tuple_(products.c.created_at, products.c.id) < tuple_(*after))
    statement = statement.order_by(products.c.created_at.desc(), products.c.id.desc()).limit(limit)
    return [r._mapping for r in (await connection.execute(statement)).all()]


async def search_products(
    connection: AsyncConnection,
    *,
    q: str,
    status: str | None,
    category_id: uuid.UUID | None,
    limit: int,
    after: tuple[float, uuid.UUID] | None,
) -> list[Row]:
    """Full-text matches, best first: keyset on (ts_rank DESC, id DESC); rows carry `rank`."""
    query = func.plainto_tsquery(literal_column("'simple'"), bindparam("q", q))
    rank = func.ts_rank(SEARCH_DOCUMENT, query, type_=REAL).label("rank")
    statement = _product_filters(select(*PRODUCT_COLUMNS, rank), status, category_id)
    statement = statement.where(SEARCH_DOCUMENT.op("@@")(query))
    if after is not None:
        last_rank = bindparam("last_rank", after[0], type_=REAL)
        statement = statement.where(tuple_(rank, products.c.id) < tuple_(last_rank, after[1]))
    statement = statement.order_by(rank.desc(), products.c.id.desc()).limit(limit)
    return [r._mapping for r in (await connection.execute(statement)).all()]


# --- categories -----------------------------------------------------------------------------------


async def insert_category(connection: AsyncConnection, values: Mapping[str, Any]) -> Row:
    statement = insert(categories).values(**values).returning(*CATEGORY_COLUMNS)
    with _constraint_errors():
        return (await connection.execute(statement)).one()._mapping


async def get_category(connection: AsyncConnection, category_id: uuid.UUID) -> Row | None:
    row = (await connection.execute(select(*CATEGORY_COLUMNS).where(categories.c.id == category_id))).first()
    return row._mapping if row is not None else None


async def update_category(
    connection: AsyncConnection, category_id: uuid.UUID, changes: Mapping[str, Any]
) -> Row | None:
    statement = (
        update(categories)
        .where(categories.c.id == category_id)
        .values(**changes, updated_at=_bumped_updated_at(categories.c.updated_at))
        .returning(*CATEGORY_COLUMNS)
    )
    with _constraint_errors():
        row = (await connection.execute(statement)).first()
    return row._mapping if row is not None else None


async def list_categories(
    connection: AsyncConnection, *, limit: int, after: tuple[int, str] | None
) -> list[Row]:
    """Keyset on (position, slug); slug is unique in a tenant."""
    statement = select(*CATEGORY_COLUMNS)
    if after is not None:
        statement = statement.where(tuple_(categories.c.position, categories.c.slug) > tuple_(*after))
    statement = statement.order_by(categories.c.position, categories.c.slug).limit(limit)
    return [r._mapping for r in (await connection.execute(statement)).all()]


_ANCESTRY = text(
    """
    WITH RECURSIVE ancestry(id, parent_id, depth) AS (
        SELECT id, parent_id, 0 FROM product_categories WHERE id = :start
        UNION
        SELECT c.id, c.parent_id, a.depth + 1
        FROM product_categories c JOIN ancestry a ON c.id = a.parent_id
        WHERE a.depth < 10000
    )
    SELECT id FROM ancestry ORDER BY depth
    """
)


async def ancestry(connection: AsyncConnection, category_id: uuid.UUID) -> list[uuid.UUID]:
    """The category followed by its ancestors up to a root; empty when it does not exist."""
    return list((await connection.execute(_ANCESTRY, {"start": category_id})).scalars())


# Two int4 keys: a key space apart from tenantdb's bigint fence keys.
_TREE_LOCK = text("SELECT pg_advisory_xact_lock(72201, hashtext(CAST(:tenant AS text)))")


async def lock_category_tree(connection: AsyncConnection, tenant_id: uuid.UUID) -> None:
    """Serialise re-parenting within a tenant, so two concurrent moves cannot build a cycle together."""
    await connection.execute(_TREE_LOCK, {"tenant": str(tenant_id)})
