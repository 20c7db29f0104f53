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

from pydantic import BaseModel, ConfigDict, Field, field_validator

Price = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Sku = Annotated[str, Field(min_length=1, max_length=100)]
Status = Literal["draft", "active", "archived"]
JsonObject = dict[str, Any]
Slug = Annotated[str, Field(min_length=1, max_length=100)]

MAX_BULK = 1000


def _not_null(value: Any) -> Any:
    """A PATCH may leave a required field out, not set it to null (runs only when it is present)."""
    if value is None:
        raise ValueError("cannot be null")
    return value


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductCreate(Input):
    name: Name
    price: Price
    sku: Sku | None = None
    description: str | None = None
    compare_price: Price | None = None
    cost_price: Price | None = None
    status: Status = "draft"
    inventory: JsonObject | None = None
    seo: JsonObject | None = None
    attributes: JsonObject | None = None
    category_id: uuid.UUID | None = None


class ProductPatch(Input):
    """Only the fields present are changed; `null` clears an optional field."""

    name: Name | None = None
    price: Price | None = None
    sku: Sku | None = None
    description: str | None = None
    compare_price: Price | None = None
    cost_price: Price | None = None
    status: Status | None = None
    inventory: JsonObject | None = None
    seo: JsonObject | None = None
    attributes: JsonObject | None = None
    category_id: uuid.UUID | None = None

    @field_validator("name", "price", "status")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return _not_null(value)

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
    inventory: JsonObject | None
    seo: JsonObject | None
    attributes: JsonObject | None
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
    description: str | None = None
    position: int = Field(0, ge=0, le=2_147_483_647)


class CategoryPatch(Input):
    name: Name | None = None
    slug: Slug | None = None
    parent_id: uuid.UUID | None = None
    description: str | None = None
    position: int | None = Field(None, ge=0, le=2_147_483_647)

    @field_validator("name", "slug", "position")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return _not_null(value)

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
