"""servicekit.validation and the problem responses in the OpenAPI document, without servers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field, ValidationError
from servicekit.problems import PROBLEM_JSON, PROBLEM_STATUSES, install_problem_handlers
from servicekit.validation import (
    MAX_JSON_DEPTH,
    NO_NUL_PATTERN,
    JsonObject,
    Text,
    amount_field,
    amount_max,
    check_json_value,
    is_nullable,
    optional,
)


@pytest.mark.parametrize(
    ("precision", "scale", "largest"),
    [(10, 2, "99999999.99"), (12, 2, "9999999999.99"), (10, 3, "9999999.999"), (5, 0, "99999")],
)
def test_amount_max_is_the_largest_value_of_the_column(precision: int, scale: int, largest: str) -> None:
    assert amount_max(precision, scale) == Decimal(largest)


class Body(BaseModel):
    name: Annotated[Text, Field(max_length=5)] = optional()
    price: Annotated[Decimal, amount_field(10, 2)] = Decimal(0)
    data: JsonObject | None = None


@pytest.mark.parametrize(
    "value",
    [
        {"name": "a\x00"},
        {"name": None},
        {"name": "toolong"},
        {"price": "100000000"},
        {"price": "-1"},
        {"price": "1.001"},
        {"price": "NaN"},
        {"data": {"k": "\x00"}},
        {"data": {"\x00": 1}},
        {"data": {"n": 2**63}},
        {"data": {"n": float("inf")}},
        {"data": {"x": "y" * 70_000}},
    ],
)
def test_refused(value: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Body.model_validate(value)


def test_depth_is_checked_without_recursion() -> None:
    value: Any = 1
    for _ in range(100_000):  # far deeper than Python's recursion limit
        value = {"d": value}
    with pytest.raises(ValueError, match="nested deeper"):
        check_json_value(value)
    at_limit: Any = 1
    for _ in range(MAX_JSON_DEPTH):
        at_limit = {"d": at_limit}
    assert check_json_value(at_limit) is at_limit


def test_schema_states_the_constraints() -> None:
    schema = Body.model_json_schema()["properties"]
    assert schema["name"] | {"maxLength": 5, "pattern": NO_NUL_PATTERN} == schema["name"]
    number = next(s for s in schema["price"]["anyOf"] if s["type"] == "number")
    assert (number["minimum"], number["maximum"]) == (0, 99999999.99)
    data = next(s for s in schema["data"]["anyOf"] if s.get("type") == "object")
    assert data["maxProperties"] == 256
    assert "bytes serialized" in data["description"]


def test_every_operation_documents_the_problem_responses() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/things")
    async def create(body: Body) -> dict[str, str]:
        return {"name": body.name}

    document = app.openapi()
    responses = document["paths"]["/things"]["post"]["responses"]
    assert set(PROBLEM_STATUSES) <= set(responses)
    for status in PROBLEM_STATUSES:
        assert list(responses[status]["content"]) == [PROBLEM_JSON]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    # A PATCH field that cannot be null shows no null default; one that can still offers null.
    properties = document["components"]["schemas"]["Body"]["properties"]
    assert "default" not in properties["name"]
    assert is_nullable(properties["data"])
    assert not is_nullable(properties["name"])
    assert app.openapi() is document  # built once
