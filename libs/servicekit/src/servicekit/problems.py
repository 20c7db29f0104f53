"""RFC 9457 problem details: one exception family and one handler set for every service."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from tenantdb import TenantMoving, TenantNotFound, TenantUnavailable

from servicekit.counting import mark_unknown_tenant

PROBLEM_JSON = "application/problem+json"
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


class Forbidden(Problem):
    status, title = 403, "Forbidden"


class NotFound(Problem):
    status, title = 404, "Not Found"


class Conflict(Problem):
    status, title = 409, "Conflict"


class PayloadTooLarge(Problem):
    status, title = 413, "Payload Too Large"


class Unprocessable(Problem):
    status, title = 422, "Unprocessable Content"


class Unavailable(Problem):
    status, title = 503, "Service Unavailable"


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

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", ""), "type": e.get("type", "")}
            for e in error.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, "Unprocessable Content", detail, request, errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        return problem_response(error.status_code, str(error.detail), str(error.detail), request)

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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(500, "Internal Server Error", "an unexpected error occurred", request)
