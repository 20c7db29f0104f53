"""Request and response models of the orders API (CONTRACT.md §3). Amounts travel as strings."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from servicekit.validation import MAX_TEXT, JsonObject, Text

# NUL is excluded like whitespace: PostgreSQL cannot store it in text.
EMAIL_PATTERN = r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"
# Bounds are the columns' (tenantschema.declarations: customers, orders).
PersonName = Annotated[Text, Field(max_length=100)]
Phone = Annotated[Text, Field(max_length=20)]
Notes = Annotated[Text, Field(max_length=MAX_TEXT)]
MAX_ITEMS = 100
MAX_QUANTITY = 10_000


def _lower(value: str) -> str:
    return value.strip().lower()


def _upper(value: str) -> str:
    return value.upper()


Email = Annotated[str, Field(max_length=255, pattern=EMAIL_PATTERN), AfterValidator(_lower)]
Money = Annotated[Decimal, PlainSerializer(lambda d: f"{d:.2f}", return_type=str)]
Status = Literal["pending", "confirmed", "shipped", "delivered", "cancelled"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CustomerCreate(Request):
    email: Email
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    phone: Phone | None = None


class Customer(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    first_name: str | None
    last_name: str | None
    phone: str | None
    total_orders: int
    total_spent: Money
    last_order_date: datetime | None
    created_at: datetime
    updated_at: datetime


class OrderItemIn(Request):
    product_id: uuid.UUID
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class OrderCreate(Request):
    """Totals are computed from catalog prices; an order whose subtotal or total would exceed what an
    amount column holds (numeric(12, 2): 9999999999.99) is refused with 422 naming `items`."""

    customer_email: Email
    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_ITEMS)
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$"), AfterValidator(_upper)] = "USD"
    shipping_address: JsonObject | None = None
    billing_address: JsonObject | None = None
    notes: Notes | None = None


class OrderItem(BaseModel):
    product_id: uuid.UUID
    name: str
    sku: str | None
    quantity: int
    unit_price: Money
    line_total: Money


class Order(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_number: str
    customer_email: str
    customer_id: uuid.UUID | None
    status: str
    payment_status: str
    fulfillment_status: str
    subtotal_amount: Money
    tax_amount: Money
    shipping_amount: Money
    discount_amount: Money
    total_amount: Money
    currency: str
    items: list[OrderItem]
    shipping_address: dict[str, Any] | None
    billing_address: dict[str, Any] | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[Order]
    next_cursor: str | None


class OrderStatusUpdate(Request):
    status: Status
