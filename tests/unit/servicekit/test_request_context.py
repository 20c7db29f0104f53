"""Every log line written while a request is handled carries its request id and tenant id."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import structlog
from fastapi import FastAPI
from servicekit.http import RequestContextMiddleware
from servicekit.logs import configure_logging


async def test_log_lines_carry_the_request_and_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO")
    app = FastAPI()
    app.add_middleware(RequestContextMiddleware, counter=None, max_body_bytes=1024)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        structlog.get_logger().info("handling")
        return {"ok": "yes"}

    tenant = uuid.uuid4()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/hello", headers={"X-Tenant-ID": str(tenant), "X-Request-ID": "r-1"})
        assert response.headers["x-request-id"] == "r-1"
        anonymous = await client.get("/hello")
    structlog.get_logger().info("after")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    handling = [line for line in lines if line["message"] == "handling"]
    assert handling[0] | {"request_id": "r-1", "tenant_id": str(tenant), "service": "svc"} == handling[0]
    assert handling[1]["request_id"] == anonymous.headers["x-request-id"]
    assert handling[1]["tenant_id"] is None
    [after] = [line for line in lines if line["message"] == "after"]
    assert "request_id" not in after  # the context ends with the request
