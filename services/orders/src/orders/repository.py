"""The orders service's SQL, against the dedicated-shaped `tenantschema.tables` (no tenant_id).

Every function runs on the connection of a `tenantdb` unit of work: on the shared database the
tenant_id default and RLS scope each statement to the unit of work's tenant, so the same SQL serves
both placements. No ON CONFLICT names a column list where the shared variant's unique constraint
leads with tenant_id; `ON CONFLICT DO NOTHING` (no target) fits both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Row,
    String,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from tenantschema.tables import customers, idempotency_keys, order_products, orders, sequences

from orders.domain import MAX_AMOUNT, CatalogProduct

ORDER_NUMBER_SEQUENCE = "order_number"
# A customer's running totals saturate at what their columns hold (total_spent numeric(12, 2),
# total_orders integer) instead of overflowing: an overflow would fail, forever, every later order of
# that customer. Each order's own amounts are checked before it is placed (domain.compute_totals).
MAX_TOTAL_SPENT = MAX_AMOUNT
MAX_TOTAL_ORDERS = 2_147_483_647
ORDER_NUMBER_START = 1000  # the first order is 1001


# customers


async def insert_customer(connection: AsyncConnection, values: Mapping[str, Any]) -> Row[Any] | None:
    """The new customer, or None when the email is taken in this tenant."""
    statement = insert(customers).values(**values).on_conflict_do_nothing().returning(*customers.c)
    return (await connection.execute(statement)).first()


async def get_customer(connection: AsyncConnection, customer_id: uuid.UUID) -> Row[Any] | None:
    return (await connection.execute(select(customers).where(customers.c.id == customer_id))).first()


def _counted(total_orders: ColumnElement[int], one: ColumnElement[int]) -> ColumnElement[int]:
    return func.least(total_orders, literal_column(str(MAX_TOTAL_ORDERS - 1))) + one


def _spent(total_spent: ColumnElement[Decimal], amount: ColumnElement[Decimal]) -> ColumnElement[Decimal]:
    return func.least(total_spent + amount, literal_column(f"{MAX_TOTAL_SPENT}"))


async def add_order_to_customer(connection: AsyncConnection, email: str, total: Decimal) -> uuid.UUID:
    """Count an order on the customer with this email, creating the customer if there is none.

    Increments in SQL (`total_orders = total_orders + 1`) under the row lock, so concurrent orders
    of one customer all count. Update first (the usual case); a customer created concurrently
    between our insert attempt and theirs is caught by ON CONFLICT and updated on the next turn.
    """
    now = func.clock_timestamp()
    bump = (
        update(customers)
        .where(customers.c.email == email)
        .values(
            total_orders=_counted(customers.c.total_orders, literal_column("1")),
            total_spent=_spent(
                customers.c.total_spent, bindparam("p_spent", total, type_=customers.c.total_spent.type)
            ),
            last_order_date=func.greatest(func.coalesce(customers.c.last_order_date, now), now),
            updated_at=now,
        )
        .returning(customers.c.id)
    )
    create = (
        insert(customers)
        .values(email=email, total_orders=1, total_spent=total, last_order_date=now)
        .on_conflict_do_nothing()
        .returning(customers.c.id)
    )
    for statement in (bump, create, bump):
        customer_id: uuid.UUID | None = (await connection.execute(statement)).scalar_one_or_none()
        if customer_id is not None:
            return customer_id
    raise RuntimeError(f"customer {email!r} neither updated nor created")  # not reachable under RLS


# sequences


async def next_order_number(connection: AsyncConnection) -> tuple[int, datetime]:
    """The tenant's next order number and the time it was taken, under the sequence's row lock.

    The lock is held until the transaction ends: concurrent orders of a tenant take numbers one
    after another, and a rolled-back order gives its number back (no gaps). The returned time
    (`clock_timestamp()`, taken under the lock) is the order's created_at, so creation order and
    order-number order agree.
    """
    bump = (
        update(sequences)
        .where(sequences.c.name == ORDER_NUMBER_SEQUENCE)
        .values(last_value=sequences.c.last_value + 1)
        .returning(sequences.c.last_value, func.clock_timestamp())
    )
    row = (await connection.execute(bump)).first()
    if row is None:
        await connection.execute(
            insert(sequences)
            .values(name=ORDER_NUMBER_SEQUENCE, last_value=ORDER_NUMBER_START)
            .on_conflict_do_nothing()
        )
        row = (await connection.execute(bump)).one()
    return int(row[0]), row[1]


# the product read model


# On every order: run on the unit of work's asyncpg connection (as catalog's point read), where
# SQLAlchemy's per-execution work would cost about as much as the round trip.
_PRODUCTS_BY_ID_SQL = (
    "SELECT id, name, sku, price, status, deleted FROM order_products WHERE id = ANY($1::uuid[])"
)


async def products_by_id(
    driver: asyncpg.Connection, product_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, CatalogProduct]:
    rows = await driver.fetch(_PRODUCTS_BY_ID_SQL, list(set(product_ids)))
    return {
        row["id"]: CatalogProduct(
            row["id"], row["name"], row["sku"], row["price"], row["status"], row["deleted"]
        )
        for row in rows
    }


async def upsert_product(connection: AsyncConnection, values: Mapping[str, Any]) -> bool:
    """Insert the product, or overwrite it only with a newer version; True when something changed."""
    base = insert(order_products).values(**values)
    statement = base.on_conflict_do_update(
        index_elements=[order_products.c.id],
        set_={
            column: base.excluded[column]
            for column in ("name", "sku", "price", "status", "deleted", "version_at")
        },
        where=order_products.c.version_at < base.excluded.version_at,
    ).returning(order_products.c.id)
    return (await connection.execute(statement)).first() is not None


# orders


async def insert_order(connection: AsyncConnection, values: Mapping[str, Any]) -> Row[Any]:
    return (await connection.execute(insert(orders).values(**values).returning(*orders.c))).one()


def _place_order_statement() -> Any:
    """Count the order on its (existing) customer, take the tenant's next order number and insert the
    order, in ONE statement. Orders of a tenant serialize on the sequence row (and orders of a
    customer on the customer row) until commit; each round trip inside that window costs every
    waiting order, so the usual case takes one instead of three. Built once, at import."""
    now = func.clock_timestamp()
    one: ColumnElement[int] = literal_column(
        "1"
    )  # constants as SQL, not anonymous binds (lost by DML-in-CTE caching)
    # Parameter names carry a prefix: a name equal to a column of an UPDATEd table would be taken by
    # SQLAlchemy as a SET value for it (`id`, `notes` are columns of customers and orders alike).
    email = bindparam("p_customer_email", type_=customers.c.email.type)
    sequence_name: BindParameter[str] = bindparam("p_sequence_name")
    counted = (
        update(customers)
        # Only when the sequence exists too (rows of it are never deleted): all or nothing is written.
        .where(customers.c.email == email, exists().where(sequences.c.name == sequence_name))
        .values(
            total_orders=_counted(customers.c.total_orders, one),
            total_spent=_spent(
                customers.c.total_spent, bindparam("p_total_amount", type_=orders.c.total_amount.type)
            ),
            last_order_date=func.greatest(func.coalesce(customers.c.last_order_date, now), now),
            updated_at=now,
        )
        .returning(customers.c.id)
        .cte("counted_customer")
    )
    numbered = (
        update(sequences)
        # Only once the customer is counted: no number is taken for an order that is not placed here.
        .where(sequences.c.name == sequence_name, exists(select(counted.c.id)))
        .values(last_value=sequences.c.last_value + one)
        .returning(sequences.c.last_value, now.label("taken_at"))
        .cte("order_number")
    )
    given = [c.name for c in orders.c if c.name in _GIVEN_ORDER_COLUMNS]
    source = select(
        *(bindparam(f"p_{name}", type_=orders.c[name].type) for name in given),
        cast(numbered.c.last_value, String),
        counted.c.id,
        numbered.c.taken_at,
        numbered.c.taken_at,
    ).select_from(counted.join(numbered, counted.c.id.isnot(None)))
    return (
        insert(orders)
        .from_select([*given, "order_number", "customer_id", "created_at", "updated_at"], source)
        .returning(*orders.c)
    )


# What the caller supplies; the rest is the database's (number, customer, times) or a column default.
_GIVEN_ORDER_COLUMNS = frozenset(
    {
        "id", "customer_email", "status", "total_amount", "subtotal_amount", "tax_amount",
        "shipping_amount", "discount_amount", "currency", "items", "shipping_address",
        "billing_address", "notes",
    }
)  # fmt: skip
_PLACE_ORDER = _place_order_statement()


async def place_order_for_known_customer(
    connection: AsyncConnection, values: Mapping[str, Any]
) -> Row[Any] | None:
    """The placed order, or None (nothing written) when the customer or the tenant's order number
    sequence does not exist yet: the caller then takes the step-by-step path."""
    missing = _GIVEN_ORDER_COLUMNS - values.keys()
    if missing:
        raise ValueError(f"order values lack {sorted(missing)}")
    params = {f"p_{name}": value for name, value in values.items()} | {
        "p_sequence_name": ORDER_NUMBER_SEQUENCE
    }
    return (await connection.execute(_PLACE_ORDER, params)).first()


async def get_order(
    connection: AsyncConnection, order_id: uuid.UUID, *, for_update: bool = False
) -> Row[Any] | None:
    statement = select(orders).where(orders.c.id == order_id)
    if for_update:
        statement = statement.with_for_update()
    return (await connection.execute(statement)).first()


async def list_orders(
    connection: AsyncConnection,
    *,
    status: str | None,
    customer_email: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Row[Any]]:
    """Newest first, keyset-paginated on (created_at, id)."""
    statement = select(orders)
    if status is not None:
        statement = statement.where(orders.c.status == status)
    if customer_email is not None:
        statement = statement.where(orders.c.customer_email == customer_email)
    if after is not None:
        statement = statement.where(tuple_(orders.c.created_at, orders.c.id) < tuple_(*after))
    statement = statement.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
    return list((await connection.execute(statement)).all())


async def set_order_status(connection: AsyncConnection, order_id: uuid.UUID, status: str) -> Row[Any]:
    statement = (
        update(orders)
        .where(orders.c.id == order_id)
        .values(status=status, updated_at=func.clock_timestamp())
        .returning(*orders.c)
    )
    return (await connection.execute(statement)).one()


# idempotency keys


async def claim_idempotency_key(
    connection: AsyncConnection, scope: str, key: str, request_hash: str
) -> uuid.UUID | None:
    """Take the key for this transaction; None when another request already holds it.

    A concurrent holder makes this insert wait on the unique index until it commits (then None:
    read its response) or rolls back (then the key is ours).
    """
    statement = (
        insert(idempotency_keys)
        .values(scope=scope, key=key, request_hash=request_hash, status_code=0, response={})
        .on_conflict_do_nothing()
        .returning(idempotency_keys.c.id)
    )
    key_id: uuid.UUID | None = (await connection.execute(statement)).scalar_one_or_none()
    return key_id


async def get_idempotency_key(connection: AsyncConnection, scope: str, key: str) -> Row[Any] | None:
    statement = select(idempotency_keys).where(
        idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
    )
    return (await connection.execute(statement)).first()


async def save_idempotent_response(
    connection: AsyncConnection, key_id: uuid.UUID, status_code: int, response: Mapping[str, Any]
) -> None:
    statement = (
        update(idempotency_keys)
        .where(idempotency_keys.c.id == key_id)
        .values(status_code=status_code, response=dict(response))
    )
    await connection.execute(statement)
