"""The catalog's rules, without I/O: product events, the category cycle rule, request models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from catalog import domain
from catalog.schemas import BulkCreate, CategoryPatch, Product, ProductCreate, ProductPatch
from pydantic import ValidationError


def row(**overrides: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "name": "Lamp",
        "sku": "L-1",
        "price": Decimal("9.90"),
        "status": "active",
        "deleted_at": None,
        "category_id": None,
        "updated_at": datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    } | overrides


def test_product_event_carries_the_product_after_the_change() -> None:
    tenant = uuid.uuid4()
    product = row()
    event = domain.product_event(domain.PRODUCT_CREATED, tenant, product)
    assert event.event_type == "product.created"
    assert event.tenant_id == tenant
    assert event.producer == "catalog"
    assert event.schema_version == 1
    assert event.key() == str(tenant).encode()
    assert event.data == {
        "product_id": str(product["id"]),
        "name": "Lamp",
        "sku": "L-1",
        "price": "9.90",
        "status": "active",
        "deleted": False,
        "category_id": None,
        "updated_at": "2025-01-02T03:04:05.678901Z",
    }


def test_a_deleted_product_event_says_so() -> None:
    event = domain.product_event(domain.PRODUCT_DELETED, uuid.uuid4(), row(deleted_at=datetime.now(UTC)))
    assert event.data["deleted"] is True


def test_events_have_distinct_ids() -> None:
    tenant, product = uuid.uuid4(), row()
    first = domain.product_event(domain.PRODUCT_UPDATED, tenant, product)
    second = domain.product_event(domain.PRODUCT_UPDATED, tenant, product)
    assert first.event_id != second.event_id


def test_category_cycle_rule() -> None:
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    # The tree: a <- b <- c (c's ancestry is [c, b, a]); d is a root of its own.
    assert domain.creates_cycle(a, [c, b, a])  # a under its grandchild
    assert domain.creates_cycle(b, [c, b, a])  # b under its child
    assert domain.creates_cycle(a, [a])  # a under itself
    assert not domain.creates_cycle(c, [a])  # c up to the root: fine
    assert not domain.creates_cycle(a, [d])  # a under another tree
    assert not domain.creates_cycle(d, [c, b, a])


def test_prices_have_two_places_and_serialise_as_strings() -> None:
    assert ProductCreate(name="x", price=9.99).price == Decimal("9.99")  # type: ignore[arg-type]
    for bad in ("-0.01", "1.001", "123456789.00", "NaN"):
        with pytest.raises(ValidationError):
            ProductCreate(name="x", price=bad)  # type: ignore[arg-type]
    product = Product(
        id=uuid.uuid4(), name="x", description=None, sku=None, price=Decimal("10.00"), compare_price=None,
        cost_price=Decimal("0.50"), status="draft", inventory=None, seo=None, attributes=None,
        category_id=None, created_at=datetime.now(UTC), updated_at=datetime.now(UTC),
    )  # fmt: skip
    dumped = product.model_dump(mode="json")
    assert (dumped["price"], dumped["cost_price"]) == ("10.00", "0.50")


def test_patches_know_what_was_sent() -> None:
    patch = ProductPatch.model_validate({"description": None, "price": "2"})
    assert patch.changes() == {"description": None, "price": Decimal("2")}
    for required in ("name", "price", "status"):
        with pytest.raises(ValidationError) as error:
            ProductPatch.model_validate({required: None})
        assert error.value.errors()[0]["loc"] == (required,)
    assert CategoryPatch.model_validate({"parent_id": None}).changes() == {"parent_id": None}
    with pytest.raises(ValidationError):
        CategoryPatch.model_validate({"slug": None})
    with pytest.raises(ValidationError):
        ProductCreate.model_validate({"name": "x", "price": 1, "extra": True})


def test_bulk_takes_at_most_a_thousand() -> None:
    item = {"name": "x", "price": 1}
    assert len(BulkCreate.model_validate({"items": [item] * 1000}).items) == 1000
    with pytest.raises(ValidationError):
        BulkCreate.model_validate({"items": [item] * 1001})
