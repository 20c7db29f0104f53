"""RFC 9457 problem details: one handler set for every service, and the one place where domain errors
(servicekit.errors, raised by use cases) and tenantdb's routing errors get their HTTP status.

`Problem` is for the HTTP layer itself (a malformed header); use cases raise `servicekit.errors`."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any, Final

import asyncpg
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from tenantdb import PoolExhausted, TenantMoving, TenantNotFound, TenantUnavailable

from servicekit import errors
from servicekit.counting import mark_unknown_tenant
from servicekit.validation import NO_NUL_PATTERN, is_nullable

PROBLEM_JSON = "application/problem+json"
TENANT_HEADER = "X-Tenant-ID"
log = structlog.get_logger("servicekit.problems")

# SQLSTATE class 22, "data exception": a value the column or function cannot take (numeric overflow,
# NUL in text, a date out of range, invalid JSON...). The driver's own refusal to encode an argument
# (asyncpg's client-side DataError: an int beyond int4, a year-1 time shifted before year 1) is the
# same mistake caught one step earlier; it carries no SQLSTATE, so it is given the class's generic one.
DATA_EXCEPTION_CLASS: Final = "22"
DATA_EXCEPTION: Final = "22000"


class Problem(Exception):
    status: int = 500
    title: str = "Internal Server Error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(Problem):
    status, title = 400, "Bad Request"


# The first class of an error's MRO found here gives its status and title (subclasses inherit theirs).
DOMAIN_STATUS: dict[type[errors.DomainError], tuple[int, str]] = {
    errors.InvalidCursor: (400, "Bad Request"),
    errors.NotFound: (404, "Not Found"),
    errors.Conflict: (409, "Conflict"),
    errors.Invalid: (422, "Unprocessable Content"),
    errors.DomainError: (422, "Unprocessable Content"),
}


def domain_status(error: errors.DomainError) -> tuple[int, str]:
    for kind in type(error).__mro__:
        found = DOMAIN_STATUS.get(kind)
        if found is not None:
            return found
    return 422, "Unprocessable Content"  # not reachable: DomainError is in every MRO here


def problem_response(
    status: int, title: str, detail: str, request: Request | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    body |= extra
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in location)


def _validation_error(error: dict[str, Any]) -> dict[str, Any]:
    kind, message = error.get("type", ""), error.get("msg", "")
    if kind == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == NO_NUL_PATTERN:
        kind, message = "nul_character", "must not contain NUL (\\u0000) characters"
    elif "input" in error and error["input"] is None and kind != "missing":
        kind, message = "null_not_allowed", "cannot be null; leave the field out to keep its value"
    return {"field": _field(tuple(error.get("loc", ()))), "message": message, "type": kind}


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)


def data_exception_sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE when `error` (or what it wraps) is a data exception (class 22), else None."""
    for cause in _causes(error):
        if isinstance(cause, asyncpg.exceptions._base.DataError):  # client-side: no SQLSTATE
            return DATA_EXCEPTION
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(DATA_EXCEPTION_CLASS):
            return sqlstate
    return None


# Conflicts PostgreSQL resolves by cancelling one side, which succeeds when tried again: answered
# 503 + Retry-After (the client retries; with an Idempotency-Key, safely), never 500.
TRANSIENT_SQLSTATES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout)
        "57014",  # query_canceled (statement_timeout)
    }
)


def transient_sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE when `error` (or what it wraps) is a conflict that passes when retried."""
    for cause in _causes(error):
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate in TRANSIENT_SQLSTATES:
            return sqlstate
    return None


def _data_exception_response(request: Request, error: BaseException, sqlstate: str) -> JSONResponse:
    # The last line: the edge should have refused this value already. Logged, so each one found becomes
    # a validation rule; answered 422 because it is the input, not the server, that is wrong.
    log.warning(
        "data exception from the database",
        path=request.url.path,
        sqlstate=sqlstate,
        error=str(error).splitlines()[0][:300] if str(error) else type(error).__name__,
    )
    return problem_response(
        422,
        "Unprocessable Content",
        "a value is out of the range the database can store",
        request,
        errors=[{"field": "", "message": "value out of range for its column", "type": "data_exception"}],
        sqlstate=sqlstate,
    )


# What any route of a service may answer besides its success (CONTRACT.md §3): every one is documented
# on every operation, with the problem schema, so clients and the fuzz tests know what to expect.
PROBLEM_STATUSES: Final = {
    "400": "Bad request: a missing or malformed X-Tenant-ID, a bad cursor, a body that is not JSON",
    "403": "The tenant is suspended or deleted",
    "404": "Not found (the resource, or the tenant)",
    "409": "Conflicts with the current state (taken unique value, transition not allowed)",
    "413": "The request body exceeds MAX_BODY_BYTES",
    "422": "A field is invalid; `errors` names each one",
    "503": "Temporarily unavailable (e.g. the tenant is moving); retry after Retry-After seconds",
}
PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the problem responses to every operation of an OpenAPI document (in place), replacing
    FastAPI's own 422 (`HTTPValidationError`, application/json), which this service never sends."""
    openapi.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for schema_name in ("HTTPValidationError", "ValidationError"):
        openapi["components"]["schemas"].pop(schema_name, None)
    reference = {"$ref": "#/components/schemas/Problem"}
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in PROBLEM_STATUSES.items():
                operation["responses"][status] = {
                    "description": operation["responses"].get(status, {}).get("description", description)
                    if status != "422"
                    else description,
                    "content": {PROBLEM_JSON: {"schema": reference}},
                }
    _drop_null_defaults(openapi)
    return openapi


def _drop_null_defaults(openapi: dict[str, Any]) -> None:
    """A field that cannot be null but defaults to None (a PATCH field left out: validation.optional)
    shows no `default: null`: the document would contradict itself."""
    for schema in openapi.get("components", {}).get("schemas", {}).values():
        for prop in schema.get("properties", {}).values():
            if "default" in prop and prop["default"] is None and not is_nullable(prop):
                del prop["default"]


def install_problem_handlers(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(error.status, error.title, error.detail, request, **error.extra)

    @app.exception_handler(errors.DomainError)
    async def _refused(request: Request, error: errors.DomainError) -> JSONResponse:
        status, title = domain_status(error)
        return problem_response(status, title, error.detail, request, **error.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [_validation_error(e) for e in error.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        if any(e.get("loc") == ("header", TENANT_HEADER) for e in error.errors()):
            # The tenant header is the request's addressing, not its content: missing or not a UUID
            # is a 400 (CONTRACT.md §3).
            tenant_detail = f"the {TENANT_HEADER} header is required and must be a UUID"
            return problem_response(400, "Bad Request", tenant_detail, request, errors=errors)
        return problem_response(422, "Unprocessable Content", detail, request, errors=errors)

    # Starlette's class, the base of FastAPI's: the router raises it for unknown routes (404) and methods
    # (405), and FastAPI raises Starlette's own for a body it cannot parse (a handler for the subclass
    # would leave that one to the default, application/json).
    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        try:
            title = HTTPStatus(error.status_code).phrase
        except ValueError:
            title = str(error.detail)
        response = problem_response(error.status_code, title, str(error.detail), request)
        response.headers.update(error.headers or {})  # 405's Allow
        return response

    @app.exception_handler(TenantNotFound)
    async def _unknown_tenant(request: Request, error: TenantNotFound) -> JSONResponse:
        mark_unknown_tenant(request.scope)  # never counted as the tenant's request
        return problem_response(404, "Not Found", str(error), request)

    @app.exception_handler(TenantUnavailable)
    async def _unavailable_tenant(request: Request, error: TenantUnavailable) -> JSONResponse:
        return problem_response(403, "Forbidden", str(error), request)

    @app.exception_handler(TenantMoving)
    async def _moving(request: Request, error: TenantMoving) -> JSONResponse:
        return problem_response(503, "Service Unavailable", str(error), request, retryable=True)

    # A saturated process sheds load (503 + Retry-After) instead of failing: tenantdb's pools, and a
    # plain SQLAlchemy pool (tenancy's engine) whose wait for a connection timed out.
    @app.exception_handler(PoolExhausted)
    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def _saturated(request: Request, error: Exception) -> JSONResponse:
        log.warning("database pool exhausted", path=request.url.path, error=str(error))
        detail = "no database connection free; retry shortly"
        return problem_response(503, "Service Unavailable", detail, request, retryable=True)

    async def _server_or_data_error(request: Request, error: Exception) -> JSONResponse:
        sqlstate = data_exception_sqlstate(error)
        if sqlstate is not None:
            return _data_exception_response(request, error, sqlstate)
        transient = transient_sqlstate(error)
        if transient is not None:
            log.warning("transient database conflict", path=request.url.path, sqlstate=transient)
            detail = "the database resolved a conflict with another transaction by cancelling this one; retry"
            return problem_response(503, "Service Unavailable", detail, request, retryable=True)
        log.exception("unhandled error", path=request.url.path)
        return problem_response(500, "Internal Server Error", "an unexpected error occurred", request)

    # Registered by class (not only under Exception) so they are answered by the exception middleware
    # and not re-raised by the server-error one. Statements run on the unit of work's asyncpg
    # connection raise the driver's errors unwrapped; asyncpg's client-side DataError is an
    # InterfaceError.
    for error_class in (DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError, Exception):
        app.add_exception_handler(error_class, _server_or_data_error)
