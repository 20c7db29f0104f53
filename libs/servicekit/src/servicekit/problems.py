"""RFC 9457 problem details: one handler set for every service, and the one place where domain errors
(servicekit.errors, raised by use cases) and tenantdb's routing errors get their HTTP status.

`Problem` is for the HTTP layer itself (a malformed header); use cases raise `servicekit.errors`."""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from tenantdb import PoolExhausted, TenantMoving, TenantNotFound, TenantUnavailable

from servicekit import errors

PROBLEM_JSON = "application/problem+json"
TENANT_HEADER = "X-Tenant-ID"
log = structlog.get_logger("servicekit.problems")


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


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(error.status, error.title, error.detail, request, **error.extra)

    @app.exception_handler(errors.DomainError)
    async def _refused(request: Request, error: errors.DomainError) -> JSONResponse:
        status, title = domain_status(error)
        return problem_response(status, title, error.detail, request, **error.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", ""), "type": e.get("type", "")}
            for e in error.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        if any(e.get("loc") == ("header", TENANT_HEADER) for e in error.errors()):
            # The tenant header is the request's addressing, not its content: missing or not a UUID
            # is a 400 (CONTRACT.md §3).
            tenant_detail = f"the {TENANT_HEADER} header is required and must be a UUID"
            return problem_response(400, "Bad Request", tenant_detail, request, errors=errors)
        return problem_response(422, "Unprocessable Content", detail, request, errors=errors)

    # Starlette's, the base of FastAPI's: the router raises it for unknown routes (404) and methods (405).
    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        response = problem_response(error.status_code, str(error.detail), str(error.detail), request)
        response.headers.update(error.headers or {})  # 405's Allow
        return response

    @app.exception_handler(TenantNotFound)
    async def _unknown_tenant(request: Request, error: TenantNotFound) -> JSONResponse:
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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(500, "Internal Server Error", "an unexpected error occurred", request)
