"""servicekit.pagination: one cursor codec for every listing; a cursor it did not issue is refused
with InvalidCursor (a 400 naming `cursor`), never passed on to the database."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from servicekit.errors import InvalidCursor
from servicekit.pagination import INT4, MAX_CURSOR_LENGTH, Keyset, Real, Text, Timestamp, Uuid

Row = dict[str, Any]
NEWEST: Keyset[Row] = Keyset("things", (Timestamp(), Uuid()), lambda r: (r["created_at"], r["id"]))
RANKED: Keyset[Row] = Keyset("things.search", (Real(), Uuid()), lambda r: (r["rank"], r["id"]))
POSITIONS: Keyset[Row] = Keyset("slots", (INT4, Text(max_length=100)), lambda r: (r["position"], r["slug"]))


def raw(*document: Any) -> str:
    """A cursor carrying `document` as JSON, the way the codec writes them: what a tamperer would send."""
    text = json.dumps(list(document), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def test_cursors_round_trip_and_are_url_safe() -> None:
    row = {"created_at": datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), "id": uuid.uuid4()}
    cursor = NEWEST.encode(row)
    assert cursor.replace("-", "").replace("_", "").isalnum()
    assert NEWEST.decode(cursor) == (row["created_at"], row["id"])
    ranked = {"rank": 0.0607927106320858, "id": uuid.uuid4()}
    assert RANKED.decode(RANKED.encode(ranked)) == (ranked["rank"], ranked["id"])
    slot = {"position": 3, "slug": "lamps"}
    assert POSITIONS.decode(POSITIONS.encode(slot)) == (3, "lamps")
    assert NEWEST.decode(None) is None


def test_an_offset_is_kept_as_the_same_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2025, 1, 1, 12, tzinfo=plus_two)
    (decoded, _) = NEWEST.decode(raw("things", when.isoformat(), str(uuid.uuid4()))) or ()
    assert decoded == when
    assert decoded.tzinfo == UTC


def test_page_cuts_at_the_limit_and_points_after_the_last_item() -> None:
    rows = [{"position": i, "slug": f"s{i}"} for i in range(4)]
    items, cursor = POSITIONS.page(rows, 3)
    assert items == rows[:3]
    assert cursor is not None
    assert POSITIONS.decode(cursor) == (2, "s2")
    assert POSITIONS.page(rows, 4) == (rows, None)


ID = str(uuid.uuid4())
NOW = datetime.now(UTC).isoformat()

BAD_NEWEST = {
    "empty": "",
    "garbage": "not a cursor!",
    "not base64url": "++//",
    "padding inside": "WyJ=4Il0",
    "non-ascii": "é",
    "not json": base64.urlsafe_b64encode(b"not json").decode(),
    "too long": "A" * (MAX_CURSOR_LENGTH + 1),
    "an object": base64.urlsafe_b64encode(b"{}").decode().rstrip("="),
    "deeply nested": base64.urlsafe_b64encode(b"[" * 300 + b"]" * 300).decode().rstrip("="),
    "another listing": raw("things.search", 0.5, ID),
    "too few values": raw("things", NOW),
    "too many values": raw("things", NOW, ID, 1),
    "a naive time": raw("things", "2025-01-01T00:00:00", ID),
    "year 1 with an offset": raw("things", "0001-01-01T00:00:00+05:00", ID),
    "not a time": raw("things", "yesterday", ID),
    "a number for the time": raw("things", 1735689600, ID),
    "not a uuid": raw("things", NOW, "nope"),
    "a uuid without dashes": raw("things", NOW, uuid.UUID(ID).hex),
    "a list for the uuid": raw("things", NOW, [ID]),
    "null values": raw("things", None, None),
}


@pytest.mark.parametrize("cursor", BAD_NEWEST.values(), ids=BAD_NEWEST.keys())
def test_bad_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        NEWEST.decode(cursor)
    assert refused.value.extra["errors"][0]["field"] == "cursor"


BAD_POSITIONS = {
    "400 digits": raw("slots", int("9" * 400), "a"),
    "2^40": raw("slots", 2**40, "a"),
    "below int4": raw("slots", -(2**31) - 1, "a"),
    "a boolean": raw("slots", True, "a"),
    "a float": raw("slots", 1.5, "a"),
    "a string position": raw("slots", "3", "a"),
    "a long slug": raw("slots", 1, "x" * 101),
    "a NUL in the slug": raw("slots", 1, "a\x00b"),
}


@pytest.mark.parametrize("cursor", BAD_POSITIONS.values(), ids=BAD_POSITIONS.keys())
def test_integers_and_strings_are_bounded(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        POSITIONS.decode(cursor)


@pytest.mark.parametrize("rank", ["1e400", "-1e400", "NaN", "Infinity", "true", '"0.5"', "1e39"])
def test_ranks_are_finite_numbers(rank: str) -> None:
    text = f'["things.search",{rank},"{ID}"]'.encode()
    with pytest.raises(InvalidCursor):
        RANKED.decode(base64.urlsafe_b64encode(text).decode().rstrip("="))
