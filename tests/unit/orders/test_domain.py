"""The orders' rules without I/O: status transitions, pricing, totals, events, request hashes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from events.models import OrderPlaced, OrderStatusChanged
from orders import domain, schemas
from orders.usecases import request_hash

ALLOWED = {
    ("pending", "confirmed"),
    ("pending", "cancelled"),
    ("confirmed", "shipped"),
    ("confirmed", "cancelled"),
    ("shipped", "delivered"),
}


@pytest.mark.parametrize("old", domain.STATUSES)
@pytest.mark.parametrize("new", domain.STATUSES)
def test_transitions(old: str, new: str) -> None:
    if (old, new) in ALLOWED:
        domain.check_transition(old, new)
    else:
        with pytest.raises(domain.InvalidTransition, match=f"from {old} to {new}"):
            domain.check_transition(old, new)


def test_unknown_statuses_never_transition() -> None:
    with pytest.raises(domain.InvalidTransition):
        domain.check_transition("lost", "pending")
    with pytest.raises(domain.InvalidTransition):
        domain.check_transition("pending", "lost")


def test_schema_statuses_are_the_domain_statuses() -> None:
    assert set(schemas.Status.__args__) == set(domain.STATUSES)  # type: ignore[attr-defined]


def product(price: str, *, status: str = "active", deleted: bool = False) -> domain.CatalogProduct:
    pid = uuid.uuid4()
    return domain.CatalogProduct(pid, f"P {pid.hex[:4]}", None, Decimal(price), status, deleted)


def test_lines_and_totals() -> None:
    lamp, chair = product("9.99"), product("45.5")
    lines = domain.price_lines([(lamp.id, 2), (chair.id, 1), (lamp.id, 1)], {p.id: p for p in (lamp, chair)})
    assert [(line.product_id, line.unit_price, line.line_total) for line in lines] == [
        (lamp.id, Decimal("9.99"), Decimal("19.98")),
        (chair.id, Decimal("45.50"), Decimal("45.50")),
        (lamp.id, Decimal("9.99"), Decimal("9.99")),
    ]
    totals = domain.compute_totals(lines)
    assert totals == domain.Totals(
        Decimal("75.47"), Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), Decimal("75.47")
    )
    assert str(totals.total) == "75.47"


def test_totals_with_tax_shipping_and_discount() -> None:
    item = product("0.10")
    lines = domain.price_lines([(item.id, 3)], {item.id: item})
    totals = domain.compute_totals(
        lines, tax=Decimal("0.024"), shipping=Decimal(5), discount=Decimal("1.005")
    )
    assert (totals.subtotal, totals.tax, totals.shipping, totals.discount) == (
        Decimal("0.30"),
        Decimal("0.02"),
        Decimal("5.00"),
        Decimal("1.01"),
    )
    assert totals.total == Decimal("4.31")  # 0.30 + 0.02 + 5.00 - 1.01: the parts shown
    assert domain.compute_totals(lines, discount=Decimal(100)).total == Decimal("0.00")


def test_totals_that_do_not_fit_are_refused() -> None:
    expensive = product("99999999.99")
    lines = domain.price_lines([(expensive.id, 10_000)] * 2, {expensive.id: expensive})
    with pytest.raises(domain.AmountTooLarge):
        domain.compute_totals(lines)


def test_unavailable_products_are_all_named() -> None:
    ok, draft, gone, archived = (
        product("1"),
        product("1", status="draft"),
        product("1", deleted=True),
        product("1", status="archived"),
    )
    missing = uuid.uuid4()
    catalog = {p.id: p for p in (ok, draft, gone, archived)}
    with pytest.raises(domain.ProductsUnavailable) as caught:
        domain.price_lines([(ok.id, 1), (draft.id, 1), (missing, 1), (gone.id, 1), (archived.id, 1)], catalog)
    assert caught.value.unavailable == [(1, draft.id), (2, missing), (3, gone.id), (4, archived.id)]
    for pid in (draft.id, missing, gone.id, archived.id):
        assert str(pid) in str(caught.value)


def test_order_placed_event() -> None:
    tenant, order_id, customer_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    lamp = product("9.99")
    lines = domain.price_lines([(lamp.id, 2)], {lamp.id: lamp})
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = domain.order_placed(
        tenant,
        order_id=order_id,
        order_number="1001",
        customer_email="a@example.com",
        customer_id=customer_id,
        currency="USD",
        totals=domain.compute_totals(lines),
        lines=lines,
        created_at=at,
    )
    assert (event.event_type, event.producer, event.tenant_id, event.schema_version) == (
        "order.placed",
        "orders",
        tenant,
        1,
    )
    assert event.key() == str(tenant).encode()
    assert event.data["total_amount"] == "19.98"
    assert event.data["items"][0]["unit_price"] == "9.99"
    data = OrderPlaced.model_validate(event.data)
    assert (data.order_id, data.customer_id, data.created_at) == (order_id, customer_id, at)


def test_status_changed_event() -> None:
    tenant, order_id = uuid.uuid4(), uuid.uuid4()
    at = datetime.now(UTC)
    event = domain.order_status_changed(
        tenant,
        order_id=order_id,
        order_number="1002",
        old_status="pending",
        new_status="confirmed",
        updated_at=at,
    )
    assert event.event_type == "order.status_changed"
    data = OrderStatusChanged.model_validate(event.data)
    assert (data.order_id, data.old_status, data.new_status, data.updated_at) == (
        order_id,
        "pending",
        "confirmed",
        at,
    )


def test_request_hash_ignores_formatting_but_not_content() -> None:
    pid = str(uuid.uuid4())
    one = schemas.OrderCreate.model_validate(
        {"customer_email": "A@Example.com", "items": [{"product_id": pid, "quantity": 1}]}
    )
    same = schemas.OrderCreate.model_validate(
        {"items": [{"quantity": 1, "product_id": pid}], "customer_email": "a@example.com", "currency": "usd"}
    )
    other = schemas.OrderCreate.model_validate(
        {"customer_email": "a@example.com", "items": [{"product_id": pid, "quantity": 2}]}
    )
    assert request_hash(one) == request_hash(same) != request_hash(other)
