"""Liveness, readiness, Prometheus metrics and the AsyncAPI document, the same on every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, JSONResponse
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT = 2.0
# Checks reported in /readyz's body that never make it 503 (CONTRACT.md §1: Kafka unreachable alone
# does not stop a service from serving; its events wait in the outbox).
INFORMATIONAL = "informational"


def database_check(engine: AsyncEngine) -> Check:
    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return check


def kafka_check(broker: KafkaBroker) -> Check:
    """Reported, never gating: "ok", or "error: ConnectionError" while Kafka is away."""

    async def check() -> None:
        if not await broker.ping(timeout=CHECK_TIMEOUT * 0.75):
            raise ConnectionError("Kafka is not reachable")

    setattr(check, INFORMATIONAL, True)
    return check


def health_router(checks: Mapping[str, Check], broker: KafkaBroker, *, title: str, version: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        async def run(check: Check) -> str:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT)
            except Exception as error:
                return f"error: {type(error).__name__}"
            return "ok"

        names = list(checks)
        results = dict(zip(names, await asyncio.gather(*(run(checks[n]) for n in names)), strict=True))
        ready = all(r == "ok" for n, r in results.items() if not getattr(checks[n], INFORMATIONAL, False))
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": results}, 200 if ready else 503
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/asyncapi.json")
    async def asyncapi_json() -> Response:
        spec = AsyncAPI(broker, title=title, version=version, schema_version="3.0.0").to_specification()
        return Response(spec.to_json(), media_type="application/json")

    @router.get("/asyncapi")
    async def asyncapi_page() -> HTMLResponse:
        return HTMLResponse(
            f"<!doctype html><title>{title} events</title>"
            f'<p>The AsyncAPI 3.0 document of {title}: <a href="asyncapi.json">asyncapi.json</a></p>'
        )

    return router
