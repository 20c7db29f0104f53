"""Keyset pagination: `limit` (1-200, default 50) and an opaque `cursor` (CONTRACT.md §3)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query

from servicekit.problems import Unprocessable

Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=500)]


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) after which the next page starts; a malformed cursor is a 422."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except (ValueError, TypeError) as error:
        raise Unprocessable(
            "cursor is not valid", errors=[{"field": "cursor", "message": str(error)}]
        ) from None


def page(items: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Given up to limit+1 rows, the page and the cursor of the next one (None on the last page)."""
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    created_at, row_id = key(items[-1])
    return items, encode_cursor(created_at, row_id)
