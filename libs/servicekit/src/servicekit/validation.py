"""Input types for the HTTP edge, declared so the OpenAPI document states every constraint.

PostgreSQL refuses what these types refuse, but as a 500: a NUL character in `text` or `jsonb`, a
number its `numeric(p, s)` column cannot hold, a string longer than its `varchar(n)`. Refusing it
here makes it a 422 that names the field, and lets a fuzzer generate requests that reach the logic.

- `Text`: a string without NUL (a pattern, so the document shows it), bounded where it is used.
- `amount_field(precision, scale)`: a decimal a `numeric(precision, scale)` column holds.
- `JsonObject`: a free-form JSON object (settings, attributes, addresses, ...): no NUL in any
  key or string at any depth, integers within int64, finite numbers, at most `MAX_JSON_DEPTH` levels
  and `MAX_JSON_BYTES` serialized, so the event that carries it fits a Kafka message (1 MB) with room.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any, Final

import pydantic_core
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

NUL: Final = "\x00"
# A JSON-schema pattern for "no NUL character" (the regex engines of pydantic and of fuzzers read \x00).
NO_NUL_PATTERN: Final = r"^[^\x00]*$"
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_JSON_DEPTH: Final = 32
# Per free-form object. A tenant event carries `settings` whole: 64 KiB of it plus the envelope stays
# far below the broker's 1 MB message limit, whatever the other fields hold.
MAX_JSON_BYTES: Final = 64 * 1024
MAX_JSON_KEYS: Final = 256  # members of one object, at any level
MAX_JSON_ITEMS: Final = 1024  # elements of one array
MAX_TEXT: Final = 10_000  # free text (descriptions, notes) in `text` columns, which have no length


Text = Annotated[str, Field(pattern=NO_NUL_PATTERN)]
"""A string without NUL: use as `Annotated[Text, Field(max_length=n)]`. A field with a pattern of its own
gives that pattern instead (it must exclude NUL itself: `[^\\x00...]`)."""


def amount_max(precision: int, scale: int) -> Decimal:
    """The largest value of `numeric(precision, scale)`: 99999999.99 for (10, 2)."""
    return Decimal(10) ** (precision - scale) - Decimal(10) ** -scale


def amount_field(precision: int, scale: int, *, minimum: Decimal = Decimal(0)) -> Any:
    """The `Field` of a decimal that a `numeric(precision, scale)` column holds, at least `minimum`:
    use as `Annotated[Decimal, amount_field(10, 2)]`. The schema states it for both forms a request
    may use: a JSON number (range, steps of 10^-scale) or a string (a pattern of the same digits)."""
    sign = "-?" if minimum < 0 else ""
    fraction = rf"(\.\d{{1,{scale}}})?" if scale else ""
    string_form = rf"^{sign}\d{{1,{precision - scale}}}{fraction}$"
    step = float(Decimal(10) ** -scale)

    def document(schema: dict[str, Any]) -> None:
        for branch in schema.get("anyOf", []):
            if branch.get("type") == "string":
                branch["pattern"] = string_form
            elif branch.get("type") == "number":
                branch["multipleOf"] = step

    return Field(
        ge=minimum,
        le=amount_max(precision, scale),
        max_digits=precision,
        decimal_places=scale,
        json_schema_extra=document,
    )


def _refuse(path: str, message: str) -> PydanticCustomError:
    where = f" at {path}" if path else ""
    return PydanticCustomError("invalid_json_value", "{message}{where}", {"message": message, "where": where})


def check_json_value(value: Any, *, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Walk a parsed JSON value without recursion (its depth is what is being checked)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list) and depth > max_depth:
            raise _refuse(path, f"nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            if len(item) > MAX_JSON_KEYS:
                raise _refuse(path, f"an object has more than {MAX_JSON_KEYS} members")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise _refuse(path, "object keys must be strings")
                child_path = f"{path}.{key}" if path else key
                if NUL in key:
                    raise _refuse(path, "a key contains a NUL (\\u0000) character")
                stack.append((child, child_path, depth + 1))
        elif isinstance(item, list):
            if len(item) > MAX_JSON_ITEMS:
                raise _refuse(path, f"an array has more than {MAX_JSON_ITEMS} elements")
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            if NUL in item:
                raise _refuse(path, "a string contains a NUL (\\u0000) character")
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise _refuse(path, "integers must be within the signed 64-bit range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _refuse(path, "numbers must be finite")
        else:
            raise _refuse(path, f"{type(item).__name__} is not a JSON value")
    size = len(pydantic_core.to_json(value))
    if size > max_bytes:
        raise PydanticCustomError(
            "json_too_large",
            "serializes to {size} bytes, more than {limit}",
            {"size": size, "limit": max_bytes},
        )
    return value


def _json_object_check(value: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = check_json_value(value)
    return checked


JSON_OBJECT_DESCRIPTION: Final = (
    f"A JSON object: at most {MAX_JSON_BYTES} bytes serialized, {MAX_JSON_DEPTH} levels deep (the "
    "object itself is level 1), "
    f"{MAX_JSON_KEYS} members per object and {MAX_JSON_ITEMS} elements per array; no NUL (\\u0000) in "
    "keys or strings; integers within the signed 64-bit range."
)

JsonObject = Annotated[
    dict[str, Any],
    Field(max_length=MAX_JSON_KEYS, description=JSON_OBJECT_DESCRIPTION),
    AfterValidator(_json_object_check),
]
"""A free-form object, stored as jsonb."""


def optional() -> Any:
    """The default of a PATCH field that may be left out but not set to null (its column is NOT NULL):
    declare it with its non-null type, `name: Name = optional()`. An explicit null then fails the type
    (422 naming the field); the schema does not offer null (`servicekit.problems` drops the `default:
    null` of such fields from the OpenAPI document, which a fuzzer would otherwise send)."""
    return Field(default=None)


def is_nullable(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "null" or "null" in (schema.get("type") or []):
        return True
    return any(is_nullable(branch) for branch in schema.get("anyOf", []) + schema.get("oneOf", []))
