"""The catalog's rules and event construction. No I/O."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from events.envelope import Envelope
from events.models import ProductData

PRODUCER: Final = "catalog"
PRODUCT_CREATED: Final = "product.created"
PRODUCT_UPDATED: Final = "product.updated"
PRODUCT_DELETED: Final = "product.deleted"


def product_event(event_type: str, tenant_id: uuid.UUID, product: Mapping[Any, Any]) -> Envelope:
    """The integration event for a product as it is after the change (a row of `products`)."""
    data = ProductData(
        product_id=product["id"],
        name=product["name"],
        sku=product["sku"],
        price=product["price"],
        status=product["status"],
        deleted=product["deleted_at"] is not None,
        category_id=product["category_id"],
        updated_at=product["updated_at"],
    )
    return Envelope(
        event_type=event_type, tenant_id=tenant_id, producer=PRODUCER, data=data.model_dump(mode="json")
    )


def creates_cycle(category_id: uuid.UUID, new_parent_ancestry: Sequence[uuid.UUID]) -> bool:
    """Would making the category a child of a parent turn the tree into a cycle?

    `new_parent_ancestry` is the new parent followed by its ancestors up to a root. A category may not
    become its own parent, nor the child of one of its descendants (it would be its own ancestor).
    """
    return category_id in new_parent_ancestry
