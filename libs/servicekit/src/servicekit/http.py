"""HTTP pieces: the X-Tenant-ID dependency and one ASGI middleware for request context, body limit,
request counting and the RED metrics (pure ASGI: BaseHTTPMiddleware would cost every request a task;
one middleware, not two, because each layer wraps `send` once more on every request)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import Header, Request, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.counting import UNKNOWN_TENANT, RequestCounter
from servicekit.logs import REQUEST_CONTEXT
from servicekit.metrics import METHODS, UNMATCHED, observe
from servicekit.problems import TENANT_HEADER, problem_response

# A plain header parameter, not a dependency: FastAPI parses it as the bare app does (a dependency
# would cost every request a sub-solve, ~5 % of a point read); servicekit.problems answers a missing
# or malformed one with 400 (CONTRACT.md §3), not FastAPI's 422.
TenantId = Annotated[
    uuid.UUID,
    Header(alias=TENANT_HEADER, description="The tenant the request acts for (CONTRACT.md §3)"),
]

U = TypeVar("U")


def usecases(kind: type[U]) -> Callable[[Request], U]:
    """The accessor of the service's use-case object (`app.state.usecases`, set by the servicekit
    factory): `uses = usecases(Catalog)`, then `uses(request).get_product(...)` in a route. A plain
    call rather than a FastAPI dependency: it sits on every request's path."""

    def of_app(request: Request) -> U:
        found: U = request.app.state.usecases
        return found

    return of_app


class ModelResponse(Response):
    """A pydantic model serialized once. Returning a model lets FastAPI dump it, validate it again
    against the response model and serialize it (three passes per request); returning this skips
    both extra passes. Declare `response_model=` on the route so the OpenAPI document still shows it."""

    media_type = "application/json"

    def __init__(self, model: BaseModel, status_code: int = 200) -> None:
        super().__init__(model.model_dump_json(), status_code=status_code)


class RequestContextMiddleware:
    """Binds request id and tenant id to the logs, counts tenant requests (servicekit.counting),
    refuses oversized bodies, and observes every answer for the RED metrics (servicekit.metrics),
    refusals included: the outermost of the service's middlewares."""

    def __init__(self, app: ASGIApp, *, counter: RequestCounter | None, max_body_bytes: int) -> None:
        self.app = app
        self.counter = counter
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers
        try:
            status = await self._handle(scope, receive, send)
        finally:
            # The router put the matched route into this same scope dict on its way down.
            template = getattr(scope.get("route"), "path_format", None) or UNMATCHED
            method = scope["method"]
            observe(template, method if method in METHODS else "OTHER", status, time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> int:
        """The request, answered; returns the status sent (500 if none was)."""
        status = 500
        # ASGI header names are lower-case bytes: pick the three we need in one pass, decode only those.
        request_id = raw_tenant = length = None
        for name, value in scope["headers"]:
            if name == b"x-tenant-id":
                raw_tenant = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
        request_id = request_id or uuid.uuid4().hex
        tenant: uuid.UUID | None = None
        if raw_tenant:
            try:
                tenant = uuid.UUID(raw_tenant)
            except ValueError:
                tenant = None
        context = REQUEST_CONTEXT.set(
            {"request_id": request_id, "tenant_id": str(tenant) if tenant else None}
        )
        header = (b"x-request-id", request_id.encode())

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(scope, receive, send_noting_status, context)
            return status
        if length is None and scope["method"] not in _BODYLESS:
            # No Content-Length (chunked): read the body here, at most one byte past the limit, so an
            # oversized one is a 413 before the app sees it (the app would read a truncated body and
            # answer 400). Within the limit it is replayed to the app unchanged.
            chunks: list[bytes] = []
            received = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break  # the client went away: nothing to answer (the app sees the disconnect)
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_body:
                    await self._too_large(scope, receive, send_noting_status, context)
                    return status
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            receive = _replay(b"".join(chunks), receive)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            REQUEST_CONTEXT.reset(context)
            # Counted once answered, unless the id named no tenant (set by the TenantNotFound handler).
            if tenant is not None and self.counter is not None and UNKNOWN_TENANT not in scope:
                self.counter.add(tenant)
        return status

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, context: Token[Mapping[str, Any] | None]
    ) -> None:
        structlog.get_logger().warning("request body over the limit", limit=self.max_body)
        response = problem_response(
            413, "Payload Too Large", f"the request body exceeds {self.max_body} bytes"
        )
        try:
            await response(scope, receive, send)
        finally:
            REQUEST_CONTEXT.reset(context)


_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out `body` once, then defers to the real one (for the disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
