"""The rules of orders, without I/O: status transitions, pricing and totals, and the events they emit."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from events import topics
from events.envelope import Envelope
from events.models import OrderItemData, OrderPlaced, OrderStatusChanged
from servicekit import errors

PRODUCER: Final = "orders"
TOPIC: Final = topics.ORDERS

PENDING: Final = "pending"
STATUSES: Final = ("pending", "confirmed", "shipped", "delivered", "cancelled")
TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    "pending": frozenset({"confirmed", "cancelled"}),
    "confirmed": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset({"delivered"}),
    "delivered": frozenset(),
    "cancelled": frozenset(),
}

CENT: Final = Decimal("0.01")
# orders.*_amount and customers.total_spent are numeric(12, 2).
MAX_AMOUNT: Final = Decimal("9999999999.99")


class InvalidTransition(errors.InvalidTransition):
    def __init__(self, old: str, new: str) -> None:
        super().__init__(f"an order cannot go from {old} to {new}", current_status=old)
        self.old = old
        self.new = new


class ProductsUnavailable(errors.Invalid):
    """Some requested products are unknown, deleted or not active; `unavailable` holds (item index,
    product id) pairs, and `errors` name each item's field."""

    def __init__(self, unavailable: Sequence[tuple[int, uuid.UUID]]) -> None:
        ids = ", ".join(dict.fromkeys(str(pid) for _, pid in unavailable))
        super().__init__(
            f"unknown or unavailable product(s): {ids}",
            errors=[
                {
                    "field": f"items.{i}.product_id",
                    "message": f"product {pid} is unknown, deleted or not active",
                    "type": "product_unavailable",
                }
                for i, pid in unavailable
            ],
        )
        self.unavailable = list(unavailable)


class AmountTooLarge(errors.Invalid):
    """The order's total would not fit its column (numeric(12, 2)), even when every line does."""

    def __init__(self, total: Decimal) -> None:
        message = f"the order total {total} exceeds {MAX_AMOUNT}"
        super().__init__(message, errors=[{"field": "items", "message": message, "type": "amount_too_large"}])
        self.total = total


def check_transition(old: str, new: str) -> None:
    """Raise InvalidTransition unless `old -> new` is allowed (the same status never is)."""
    if new not in TRANSITIONS.get(old, frozenset()):
        raise InvalidTransition(old, new)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class CatalogProduct:
    """A product as the read model holds it."""

    id: uuid.UUID
    name: str
    sku: str | None
    price: Decimal
    status: str
    deleted: bool

    @property
    def orderable(self) -> bool:
        return self.status == "active" and not self.deleted


@dataclass(frozen=True, slots=True)
class Line:
    product_id: uuid.UUID
    name: str
    sku: str | None
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True, slots=True)
class Totals:
    subtotal: Decimal
    tax: Decimal
    shipping: Decimal
    discount: Decimal
    total: Decimal


def price_lines(
    requested: Sequence[tuple[uuid.UUID, int]], products: Mapping[uuid.UUID, CatalogProduct]
) -> list[Line]:
    """One priced line per requested item, in request order; ProductsUnavailable names every bad one."""
    unavailable = [
        (i, pid) for i, (pid, _) in enumerate(requested) if pid not in products or not products[pid].orderable
    ]
    if unavailable:
        raise ProductsUnavailable(unavailable)
    lines = []
    for pid, quantity in requested:
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        product = products[pid]
        unit_price = money(product.price)
        lines.append(Line(pid, product.name, product.sku, quantity, unit_price, money(unit_price * quantity)))
    return lines


def compute_totals(
    lines: Sequence[Line],
    *,
    tax: Decimal = Decimal(0),
    shipping: Decimal = Decimal(0),
    discount: Decimal = Decimal(0),
) -> Totals:
    """subtotal = sum of line totals; total = subtotal + tax + shipping - discount (never below zero),
    each part rounded to cents first, so the total is the sum of the amounts shown.

    No tax, shipping or discount rules exist yet: they are zero unless a caller passes them.
    """
    subtotal = money(sum((line.line_total for line in lines), Decimal(0)))
    tax, shipping, discount = money(tax), money(shipping), money(discount)
    total = max(subtotal + tax + shipping - discount, Decimal("0.00"))
    if total > MAX_AMOUNT or subtotal > MAX_AMOUNT:
        raise AmountTooLarge(max(total, subtotal))
    return Totals(subtotal, tax, shipping, discount, total)


def order_placed(
    tenant_id: uuid.UUID,
    *,
    order_id: uuid.UUID,
    order_number: str,
    customer_email: str,
    customer_id: uuid.UUID | None,
    currency: str,
    totals: Totals,
    lines: Sequence[Line],
    created_at: datetime,
) -> Envelope:
    data = OrderPlaced(
        order_id=order_id,
        order_number=order_number,
        customer_email=customer_email,
        customer_id=customer_id,
        currency=currency,
        subtotal_amount=totals.subtotal,
        total_amount=totals.total,
        items=[
            OrderItemData(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price=line.unit_price,
                line_total=line.line_total,
            )
            for line in lines
        ],
        created_at=created_at,
    )
    return Envelope(
        event_type="order.placed",
        tenant_id=tenant_id,
        occurred_at=created_at,
        producer=PRODUCER,
        data=data.model_dump(mode="json"),
    )


def order_status_changed(
    tenant_id: uuid.UUID,
    *,
    order_id: uuid.UUID,
    order_number: str,
    old_status: str,
    new_status: str,
    updated_at: datetime,
) -> Envelope:
    data = OrderStatusChanged(
        order_id=order_id,
        order_number=order_number,
        old_status=old_status,
        new_status=new_status,
        updated_at=updated_at,
    )
    return Envelope(
        event_type="order.status_changed",
        tenant_id=tenant_id,
        occurred_at=updated_at,
        producer=PRODUCER,
        data=data.model_dump(mode="json"),
    )
