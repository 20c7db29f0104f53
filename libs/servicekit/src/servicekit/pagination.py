"""Keyset pagination for every list endpoint: `limit` (1-200, default 50) and an opaque `cursor`
(CONTRACT.md §3), with one cursor codec.

A cursor is base64url (no padding) of a compact JSON array: the listing's name, then the last row's
key values, e.g. `["orders", "2026-01-02T03:04:05.000006+00:00", "<uuid>"]`. Decoding is strict, since
the values reach SQL as bind parameters: the text must be short and in the base64url alphabet, the
JSON a flat array of the expected length, the name that of the listing asked, and every value of
its column's type and range (an aware timestamp PostgreSQL can hold, a UUID, an int within the
column's integer type, a finite float, a bounded string). Anything else raises `InvalidCursor`
(a 400 naming `cursor`), never reaching the database as an OverflowError or a 500.

Cursors are not signed: they carry nothing a client may not see (its own rows' keys), and a forged
but well-typed one only starts the page elsewhere in the same tenant's rows.

No FastAPI import: use cases decode cursors, and use cases import nothing HTTP. FastAPI reads
`Limit`'s pydantic constraints as a query parameter's.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import Field, WithJsonSchema

from servicekit.errors import InvalidCursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Far above any cursor we issue (a listing name, a timestamp and a UUID are ~120 characters), far
# below anything that could cost parsing time or nest deeply.
MAX_CURSOR_LENGTH = 512

Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Page size.")]
# The document states what a cursor looks like; the codec, not the validator, enforces it, so that a
# bad one is the contract's 400 naming `cursor` rather than a 422.
_CURSOR_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_CURSOR_LENGTH,
    "pattern": "^[A-Za-z0-9_-]+$",
}
Cursor = Annotated[
    Annotated[str, WithJsonSchema(_CURSOR_SCHEMA)] | None,
    Field(
        description="The `next_cursor` of the previous page, as given (opaque). Any other value is a "
        "400 whose `errors` name `cursor`."
    ),
]

Row = TypeVar("Row")


class Column:
    """One column of a keyset: how its value is written into a cursor and strictly read back."""

    def dump(self, value: Any) -> Any:
        raise NotImplementedError

    def load(self, value: Any) -> Any:
        """The value, or ValueError with the reason."""
        raise NotImplementedError


class Timestamp(Column):
    """A `timestamptz`: written as RFC 3339 with its offset; read back only aware and in range."""

    def dump(self, value: Any) -> Any:
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError(f"a cursor timestamp must be an aware datetime, not {value!r}")
        return value.isoformat()

    def load(self, value: Any) -> Any:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError("a timestamp was expected")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("the timestamp has no offset")
        # Normalised here, where a year-1 time with a positive offset fails (OverflowError), rather
        # than in the driver's encoder, where it would be a 500.
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("the timestamp is out of range") from None


class Uuid(Column):
    def dump(self, value: Any) -> Any:
        return str(uuid.UUID(str(value)))

    def load(self, value: Any) -> Any:
        if not isinstance(value, str) or len(value) != 36:
            raise ValueError("a UUID was expected")
        return uuid.UUID(value)


@dataclass(frozen=True)
class Integer(Column):
    """An integer column: `Integer.INT4` or `Integer.INT8` bounds, so the driver never overflows."""

    minimum: int = -(2**31)
    maximum: int = 2**31 - 1

    def dump(self, value: Any) -> Any:
        return int(value)

    def load(self, value: Any) -> Any:
        # bool is an int in Python, not in a cursor; json.loads parses 400 digits as an int (bounded
        # by the cursor's length, then by the range check).
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("an integer was expected")
        if not self.minimum <= value <= self.maximum:
            raise ValueError("the integer is out of range")
        return value


@dataclass(frozen=True)
class Real(Column):
    """A float (`real`/`double precision`), finite."""

    def dump(self, value: Any) -> Any:
        return float(value)

    def load(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("a number was expected")
        number = float(value)
        if not math.isfinite(number) or abs(number) > 3.4e38:
            raise ValueError("the number is out of range")
        return number


@dataclass(frozen=True)
class Text(Column):
    max_length: int = 255

    def dump(self, value: Any) -> Any:
        return str(value)

    def load(self, value: Any) -> Any:
        if not isinstance(value, str) or len(value) > self.max_length or "\x00" in value:
            raise ValueError("a string was expected")
        return value


INT4 = Integer()
INT8 = Integer(-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Keyset(Generic[Row]):
    """One listing's order: its name (a cursor is valid only for the listing that issued it), its
    key columns, and how to read a row's key."""

    name: str
    columns: tuple[Column, ...]
    key: Callable[[Row], Sequence[Any]]

    def encode(self, row: Row) -> str:
        values = self.key(row)
        document = [self.name, *(column.dump(v) for column, v in zip(self.columns, values, strict=True))]
        raw = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def decode(self, cursor: str | None) -> tuple[Any, ...] | None:
        """The key after which the next page starts (None: the first page); InvalidCursor else."""
        if cursor is None:
            return None
        if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
            raise InvalidCursor("not a cursor this service issued")
        try:
            raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
            document = json.loads(raw)
        except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
            raise InvalidCursor("not a cursor this service issued") from None
        if not isinstance(document, list) or len(document) != len(self.columns) + 1:
            raise InvalidCursor("not a cursor this service issued")
        if document[0] != self.name:
            raise InvalidCursor("the cursor belongs to another listing")
        try:
            return tuple(column.load(v) for column, v in zip(self.columns, document[1:], strict=True))
        except (ValueError, TypeError) as error:
            raise InvalidCursor(str(error)) from None

    def page(self, rows: Sequence[Row], limit: int) -> tuple[list[Row], str | None]:
        """Given up to limit+1 rows (fetch one more than the page), the page and the next page's cursor
        (None on the last page)."""
        items = list(rows[:limit])
        return items, (self.encode(items[-1]) if len(rows) > limit else None)


@dataclass(frozen=True)
class Page(Generic[Row]):
    items: list[Row]
    next_cursor: str | None
