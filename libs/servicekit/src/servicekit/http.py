"""HTTP pieces: the X-Tenant-ID dependency and one ASGI middleware for request context, body limit
and request counting (pure ASGI: BaseHTTPMiddleware would cost every request a task)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from fastapi import Depends, Header, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.counting import UNKNOWN_TENANT, RequestCounter
from servicekit.logs import REQUEST_CONTEXT
from servicekit.problems import BadRequest, problem_response

TENANT_HEADER = "X-Tenant-ID"


async def tenant_id_header(
    x_tenant_id: Annotated[str | None, Header(alias=TENANT_HEADER)] = None,
) -> uuid.UUID:
    if x_tenant_id is None:
        raise BadRequest(f"the {TENANT_HEADER} header is required")
    try:
        return uuid.UUID(x_tenant_id)
    except ValueError:
        raise BadRequest(f"the {TENANT_HEADER} header must be a UUID") from None


TenantId = Annotated[uuid.UUID, Depends(tenant_id_header)]


class ModelResponse(Response):
    """A pydantic model serialized once. Returning a model lets FastAPI dump it, validate it again
    against the response model and serialize it (three passes per request); returning this skips
    both extra passes. Declare `response_model=` on the route so the OpenAPI document still shows it."""

    media_type = "application/json"

    def __init__(self, model: BaseModel, status_code: int = 200) -> None:
        super().__init__(model.model_dump_json(), status_code=status_code)


class RequestContextMiddleware:
    """Binds request id and tenant id to the logs, counts tenant requests (servicekit.counting),
    refuses oversized bodies."""

    def __init__(self, app: ASGIApp, *, counter: RequestCounter | None, max_body_bytes: int) -> None:
        self.app = app
        self.counter = counter
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
        if length is not None and length.isdigit() and int(length) > self.max_body:
            response = problem_response(
                413, "Payload Too Large", f"the request body exceeds {self.max_body} bytes"
            )
            try:
                await response(scope, receive, send)
            finally:
                REQUEST_CONTEXT.reset(context)
            return

        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive if length is None else receive, send_with_request_id)
        finally:
            REQUEST_CONTEXT.reset(context)
            # Counted once answered, unless the id named no tenant (set by the TenantNotFound handler).
            if tenant is not None and self.counter is not None and UNKNOWN_TENANT not in scope:
                self.counter.add(tenant)
        if too_large:
            structlog.get_logger().warning("request body over the limit", limit=self.max_body)


def client_ip(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return client[0] if client else None
