"""Request and response models.

Prices are decimals with two places (NUMERIC(10,2)); responses carry them as JSON strings ("9.99") so
no client parses them through a binary float. Requests accept a number or a string. `inventory`,
`seo` and `attributes` are free JSON objects, stored as JSONB and returned unchanged.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from servicekit.validation import MAX_TEXT, JsonObject, Text, amount_field, optional

# Bounds are the columns' (tenantschema.declarations): price numeric(10, 2), name varchar(255), ...
Price = Annotated[Decimal, amount_field(10, 2)]
Name = Annotated[Text, Field(min_length=1, max_length=255)]
Sku = Annotated[Text, Field(min_length=1, max_length=100)]
Description = Annotated[Text, Field(max_length=MAX_TEXT)]
Status = Literal["draft", "active", "archived"]
Slug = Annotated[Text, Field(min_length=1, max_length=100)]
Position = Annotated[int, Field(ge=0, le=2_147_483_647)]  # integer (int4)

MAX_BULK = 1000
StoredObject = dict[str, Any]  # in responses: checked on the way in, not again on the way out


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductCreate(Input):
    name: Name
    price: Price
    sku: Sku | None = None
    description: Description | None = None
    compare_price: Price | None = None
    cost_price: Price | None = None
    status: Status = "draft"
    inventory: JsonObject | None = None
    seo: JsonObject | None = None
    attributes: JsonObject | None = None
    category_id: uuid.UUID | None = None


class ProductPatch(Input):
    """Only the fields present are changed; `null` clears an optional field (name, price and status
    cannot be null)."""

    name: Name = optional()
    price: Price = optional()
    sku: Sku | None = None
    description: Description | None = None
    compare_price: Price | None = None
    cost_price: Price | None = None
    status: Status = optional()
    inventory: JsonObject | None = None
    seo: JsonObject | None = None
    attributes: JsonObject | None = None
    category_id: uuid.UUID | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class BulkCreate(Input):
    items: list[ProductCreate] = Field(min_length=1, max_length=MAX_BULK)


class BulkCreated(BaseModel):
    created: int
    ids: list[uuid.UUID]


class Product(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    sku: str | None
    price: Decimal
    compare_price: Decimal | None
    cost_price: Decimal | None
    status: Status
    inventory: StoredObject | None
    seo: StoredObject | None
    attributes: StoredObject | None
    category_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[Product]
    next_cursor: str | None


class CategoryCreate(Input):
    name: Name
    slug: Slug
    parent_id: uuid.UUID | None = None
    description: Description | None = None
    position: Position = 0


class CategoryPatch(Input):
    """Only the fields present are changed; name, slug and position cannot be null."""

    name: Name = optional()
    slug: Slug = optional()
    parent_id: uuid.UUID | None = None
    description: Description | None = None
    position: Position = optional()

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class Category(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    description: str | None
    parent_id: uuid.UUID | None
    position: int
    created_at: datetime
    updated_at: datetime


class CategoryPage(BaseModel):
    items: list[Category]
    next_cursor: str | None
