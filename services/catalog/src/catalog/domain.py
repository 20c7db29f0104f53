"""The catalog's rules and event construction. No I/O."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
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


class InvalidCursor(ValueError):
    """A cursor this service did not hand out (or for another ordering)."""


def encode_cursor(kind: str, values: Sequence[Any]) -> str:
    """An opaque cursor: base64url of a small JSON document naming the ordering and the last key."""
    raw = json.dumps({"k": kind, "v": list(values)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, arity: int) -> list[Any]:
    """The last key of the previous page; InvalidCursor for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        document = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (UnicodeError, binascii.Error, ValueError) as error:
        raise InvalidCursor("the cursor is not one this service issued") from error
    if not isinstance(document, dict) or document.get("k") != kind:
        raise InvalidCursor("the cursor belongs to another listing")
    values = document.get("v")
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidCursor("the cursor is not one this service issued")
    return values


# Listing orders and their keyset cursors (the values of the last row of a page).
BY_CREATED: Final = "created"  # products without q: (created_at DESC, id DESC)
BY_RANK: Final = "rank"  # products with q: (ts_rank DESC, id DESC)
BY_POSITION: Final = "position"  # categories: (position ASC, slug ASC); slug is unique in a tenant


def created_key(cursor: str) -> tuple[datetime, uuid.UUID]:
    created, ident = decode_cursor(cursor, BY_CREATED, 2)
    try:
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when, uuid.UUID(ident)
    except (TypeError, ValueError) as error:
        raise InvalidCursor("the cursor is not one this service issued") from error


def rank_key(cursor: str) -> tuple[float, uuid.UUID]:
    rank, ident = decode_cursor(cursor, BY_RANK, 2)
    try:
        if isinstance(rank, bool) or not isinstance(rank, int | float):
            raise TypeError("rank is not a number")
        return float(rank), uuid.UUID(ident)
    except (TypeError, ValueError) as error:
        raise InvalidCursor("the cursor is not one this service issued") from error


def position_key(cursor: str) -> tuple[int, str]:
    position, slug = decode_cursor(cursor, BY_POSITION, 2)
    if isinstance(position, bool) or not isinstance(position, int) or not isinstance(slug, str):
        raise InvalidCursor("the cursor is not one this service issued")
    return position, slug
