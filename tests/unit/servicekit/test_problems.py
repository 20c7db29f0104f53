"""servicekit.problems is the one place domain errors get an HTTP status: each family maps to its
status, subclasses (the services' own errors) inherit it, and `extra` travels into the body."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from orders.domain import InvalidTransition, ProductsUnavailable
from servicekit import errors
from servicekit.problems import PROBLEM_JSON, install_problem_handlers
from tenancy.domain import TenantRuleViolation

PRODUCT = uuid.uuid4()
CASES: dict[str, tuple[errors.DomainError, int]] = {
    "not found": (errors.NotFound("no such thing"), 404),
    "conflict": (errors.Conflict("busy", retryable=True), 409),
    "already exists": (errors.AlreadyExists("taken", field="sku"), 409),
    "a transition": (InvalidTransition("shipped", "pending"), 409),
    "a tenant rule": (TenantRuleViolation("a deleted tenant cannot be changed"), 409),
    "invalid": (errors.Invalid.of_field("category_id", "no such category", "unknown_reference"), 422),
    "unavailable products": (ProductsUnavailable([(1, PRODUCT)]), 422),
    "a bad cursor": (errors.InvalidCursor("not a cursor this service issued"), 400),
    "any other refusal": (errors.DomainError("no"), 422),
}


@pytest.mark.parametrize(("error", "status"), CASES.values(), ids=CASES.keys())
async def test_domain_errors_become_problem_details(error: errors.DomainError, status: int) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/refuse")
    async def refuse() -> None:
        raise error

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/refuse")
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert body["detail"] == error.detail
    assert body["instance"] == "/refuse"
    assert body | error.extra == body  # field, errors, current_status, retryable: as raised


def test_domain_errors_know_no_status() -> None:
    assert not any(hasattr(error, "status") for error, _ in CASES.values())
