"""Tenant-owned tables, declared once, without `tenant_id`.

`render.render_tables` derives both placements from these declarations: on the shared variant every
table gains a leading `tenant_id`, unique constraints and indexes become tenant-scoped, references
between tenant tables carry `tenant_id` too (so a row can never point at another tenant's row), and
`orders` is hash-partitioned by `tenant_id`. The dedicated variant is the declaration as written.

Alembic revisions render a frozen tuple (`V1`, ...). A later schema change adds `V2 = ...` and a
revision that applies the difference; `CURRENT` names what the code runs against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID


@dataclass(frozen=True)
class IndexDecl:
    """An index named `idx_<table short name>_<name>`, `idx_<short>_tenant_<name>` on shared (as the seed)."""

    name: str
    expressions: tuple[str, ...]
    where: str | None = None
    using: str = "btree"
    # A full-text (GIN) index cannot lead with tenant_id without btree_gin; RLS narrows it instead.
    tenant_scoped: bool = True


@dataclass(frozen=True)
class ReferenceDecl:
    """A foreign key to another tenant-owned table (tenant-scoped on the shared variant)."""

    column: str
    table: str
    on_delete: str | None = None


@dataclass(frozen=True)
class TenantTableDecl:
    name: str
    short: str
    columns: Callable[[], list[Column[Any]]]
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[IndexDecl, ...] = ()
    references: tuple[ReferenceDecl, ...] = ()
    # Hash partitions by tenant_id on the shared variant (0 = not partitioned).
    shared_partitions: int = 0
    # Indexes that exist only on the shared variant (the seed's plain tenant_id index).
    shared_only_indexes: tuple[IndexDecl, ...] = field(default_factory=tuple)


def _id() -> Column[Any]:
    return Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))


def _timestamps() -> list[Column[Any]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    ]


def _product_categories() -> list[Column[Any]]:
    return [
        _id(),
        Column("name", String(255), nullable=False),
        Column("slug", String(100), nullable=False),
        Column("description", Text),
        Column("parent_id", UUID(as_uuid=True)),
        Column("image_url", String(500)),
        Column("position", Integer, nullable=False, server_default=text("0")),
        Column("is_active", Boolean, nullable=False, server_default=text("true")),
        *_timestamps(),
    ]


def _products() -> list[Column[Any]]:
    return [
        _id(),
        Column("name", String(255), nullable=False),
        Column("description", Text),
        Column("sku", String(100)),
        Column("price", Numeric(10, 2), nullable=False),
        Column("compare_price", Numeric(10, 2)),
        Column("cost_price", Numeric(10, 2)),
        Column("status", String(20), nullable=False, server_default=text("'draft'")),
        Column("inventory", JSONB),
        Column("seo", JSONB),
        Column("attributes", JSONB),
        # Not in the seed: the contract's products carry a category.
        Column("category_id", UUID(as_uuid=True)),
        *_timestamps(),
        Column("deleted_at", DateTime(timezone=True)),
    ]


def _customers() -> list[Column[Any]]:
    return [
        _id(),
        Column("email", String(255), nullable=False),
        Column("first_name", String(100)),
        Column("last_name", String(100)),
        Column("phone", String(20)),
        Column("date_of_birth", Date),
        Column("default_address", JSONB),
        Column("addresses", JSONB),
        Column("marketing_consent", Boolean, nullable=False, server_default=text("false")),
        Column("tags", JSONB),
        Column("notes", Text),
        Column("total_orders", Integer, nullable=False, server_default=text("0")),
        Column("total_spent", Numeric(12, 2), nullable=False, server_default=text("0")),
        Column("last_order_date", DateTime(timezone=True)),
        *_timestamps(),
    ]


def _orders() -> list[Column[Any]]:
    return [
        _id(),
        Column("order_number", String(50), nullable=False),
        Column("customer_email", String(255), nullable=False),
        Column("customer_id", UUID(as_uuid=True)),
        Column("status", String(20), nullable=False, server_default=text("'pending'")),
        Column("payment_status", String(20), nullable=False, server_default=text("'pending'")),
        Column("fulfillment_status", String(20), nullable=False, server_default=text("'unfulfilled'")),
        Column("total_amount", Numeric(12, 2), nullable=False),
        Column("subtotal_amount", Numeric(12, 2), nullable=False),
        Column("tax_amount", Numeric(12, 2), nullable=False, server_default=text("0")),
        Column("shipping_amount", Numeric(12, 2), nullable=False, server_default=text("0")),
        Column("discount_amount", Numeric(12, 2), nullable=False, server_default=text("0")),
        Column("currency", String(3), nullable=False, server_default=text("'USD'")),
        Column("items", JSONB, nullable=False),
        Column("shipping_address", JSONB),
        Column("billing_address", JSONB),
        Column("payment_details", JSONB),
        Column("notes", Text),
        *_timestamps(),
    ]


PRODUCT_CATEGORIES = TenantTableDecl(
    name="product_categories",
    short="categories",
    columns=_product_categories,
    unique=(("slug",),),
    references=(ReferenceDecl("parent_id", "product_categories", on_delete="RESTRICT"),),
    indexes=(IndexDecl("parent", ("parent_id",)),),
)

PRODUCTS = TenantTableDecl(
    name="products",
    short="products",
    columns=_products,
    unique=(("sku",),),
    references=(ReferenceDecl("category_id", "product_categories", on_delete="RESTRICT"),),
    indexes=(
        IndexDecl("status", ("status",), where="deleted_at IS NULL"),
        IndexDecl("created", ("created_at DESC",)),
        IndexDecl("category", ("category_id",)),
        IndexDecl(
            "search",
            ("to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(description, ''))",),
            using="gin",
            tenant_scoped=False,
        ),
    ),
    shared_only_indexes=(IndexDecl("id", ()),),
)

CUSTOMERS = TenantTableDecl(
    name="customers",
    short="customers",
    columns=_customers,
    unique=(("email",),),
)

ORDERS = TenantTableDecl(
    name="orders",
    short="orders",
    columns=_orders,
    unique=(("order_number",),),
    references=(ReferenceDecl("customer_id", "customers", on_delete="RESTRICT"),),
    indexes=(
        IndexDecl("status", ("status", "created_at DESC")),
        IndexDecl("customer", ("customer_email",)),
    ),
    shared_partitions=4,
    shared_only_indexes=(IndexDecl("id", ()),),
)

# Creation order: referenced tables first.
V1: tuple[TenantTableDecl, ...] = (PRODUCT_CATEGORIES, PRODUCTS, CUSTOMERS, ORDERS)


def _processed_events() -> list[Column[Any]]:
    return [
        _id(),
        Column("consumer", String(100), nullable=False),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    ]


def _order_products() -> list[Column[Any]]:
    # The orders service's read model of catalog products, fed by product events (id = product id).
    return [
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("name", String(255), nullable=False),
        Column("sku", String(100)),
        Column("price", Numeric(10, 2), nullable=False),
        Column("status", String(20), nullable=False),
        Column("deleted", Boolean, nullable=False, server_default=text("false")),
        # The catalog's updated_at of the version held: an older event never overwrites a newer one.
        Column("version_at", DateTime(timezone=True), nullable=False),
    ]


def _sequences() -> list[Column[Any]]:
    return [
        _id(),
        Column("name", String(50), nullable=False),
        Column("last_value", BigInteger, nullable=False, server_default=text("0")),
    ]


def _idempotency_keys() -> list[Column[Any]]:
    return [
        _id(),
        Column("scope", String(50), nullable=False),
        Column("key", String(255), nullable=False),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    ]


# Consumers' inbox: an event id handled once per consumer, recorded in the same transaction as its effect.
PROCESSED_EVENTS = TenantTableDecl(
    name="processed_events",
    short="processed_events",
    columns=_processed_events,
    unique=(("consumer", "event_id"),),
)
ORDER_PRODUCTS = TenantTableDecl(name="order_products", short="order_products", columns=_order_products)
# Per-tenant counters (order numbers): one row per name, incremented under its row lock.
SEQUENCES = TenantTableDecl(name="sequences", short="sequences", columns=_sequences, unique=(("name",),))
IDEMPOTENCY_KEYS = TenantTableDecl(
    name="idempotency_keys", short="idempotency_keys", columns=_idempotency_keys, unique=(("scope", "key"),)
)

ADDED_IN_V2: tuple[TenantTableDecl, ...] = (PROCESSED_EVENTS, ORDER_PRODUCTS, SEQUENCES, IDEMPOTENCY_KEYS)
V2: tuple[TenantTableDecl, ...] = V1 + ADDED_IN_V2
CURRENT = V2
