"""The five services over HTTP (CONTRACT.md §3), every call counted in the tally.

The demo uses only the public surface, so it runs against any build of the services: an endpoint a
build lacks (the advisor's `GET /v1/placement/plan` before it lands) is a `Missing` answer that the
summary states in one line, not a crash.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from devstack.demo.tally import Tally

TENANT_HEADER = "X-Tenant-ID"
SERVICE_KEYS = ("TENANCY_URL", "CATALOG_URL", "ORDERS_URL", "USAGE_URL", "MIGRATOR_URL")


@dataclass(frozen=True)
class Missing:
    """An endpoint this build of a service does not serve (404 on a path that is not an id)."""

    what: str
    status: int

    def line(self) -> str:
        return f"{self.what}: not served by this build (HTTP {self.status})"


@dataclass(frozen=True)
class Answer:
    ok: bool
    status: int | None  # None: no answer (connection error, timeout)
    body: Any
    error: str | None

    def describe(self) -> str:
        if self.status is None:
            return self.error or "no answer"
        text = self.body.get("detail") if isinstance(self.body, dict) else None
        return f"HTTP {self.status}" + (f": {text}" if text else "")


class PlatformClient:
    """One httpx client per service, every request recorded in `tally` under a kind."""

    def __init__(
        self,
        urls: Mapping[str, str],
        tally: Tally,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        missing = [key for key in SERVICE_KEYS if not urls.get(key)]
        if missing:
            raise ValueError(f"service URLs missing: {', '.join(missing)}")
        self.tally = tally
        # Idle connections are dropped well before uvicorn's 5 s keep-alive timeout: a connection the
        # server is closing just as the client reuses it would fail a request (ReadError) that no
        # server ever refused.
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=2.0)
        self._clients = {
            key: httpx.AsyncClient(base_url=urls[key], timeout=timeout, limits=limits, transport=transport)
            for key in SERVICE_KEYS
        }

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        kind: str,
        expect: tuple[int, ...] = (200,),
        tenant: str | None = None,
        tenant_id: str | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        tolerate: tuple[int, ...] = (),
    ) -> Answer:
        """Send one request and record it: `expect`ed statuses are successes; `tolerate`d ones are
        answers the caller handles (e.g. 404 for an endpoint a build lacks) and are not failures."""
        all_headers = dict(headers or {})
        if tenant_id is not None:
            all_headers[TENANT_HEADER] = tenant_id
        started_wall = time.time()
        started = time.monotonic()
        try:
            response = await self._clients[service].request(
                method, path, json=json, params=params, headers=all_headers
            )
        except httpx.HTTPError as error:
            seconds = time.monotonic() - started
            name = type(error).__name__
            self.tally.record(
                tenant=tenant,
                kind=kind,
                started_at=started_wall,
                seconds=seconds,
                outcome=name,
                ok=False,
                detail=f"{kind} {method} {path} ({tenant or '-'}): {name}: {error}",
            )
            return Answer(False, None, None, f"{name}: {error}")
        seconds = time.monotonic() - started
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        ok = response.status_code in expect
        self.tally.record(
            tenant=tenant,
            kind=kind,
            started_at=started_wall,
            seconds=seconds,
            outcome=str(response.status_code),
            ok=ok or response.status_code in tolerate,
            detail=f"{kind} {method} {path} ({tenant or '-'}): {response.status_code} {str(body)[:200]}",
        )
        return Answer(ok, response.status_code, body, None)

    # ------------------------------------------------------------------ tenancy

    async def create_tenant(self, name: str, subdomain: str, plan: str) -> Answer:
        return await self.call(
            "TENANCY_URL",
            "POST",
            "/v1/tenants",
            kind="control",
            expect=(201,),
            json={"name": name, "subdomain": subdomain, "plan": plan},
        )

    async def get_tenant(self, tenant_id: str) -> Answer:
        return await self.call("TENANCY_URL", "GET", f"/v1/tenants/{tenant_id}", kind="control")

    async def set_plan(self, tenant_id: str, plan: str) -> Answer:
        return await self.call(
            "TENANCY_URL", "PATCH", f"/v1/tenants/{tenant_id}", kind="control", json={"plan": plan}
        )

    # ------------------------------------------------------------------ catalog, orders

    async def bulk_products(self, tenant: str, tenant_id: str, items: list[dict[str, Any]]) -> Answer:
        return await self.call(
            "CATALOG_URL",
            "POST",
            "/v1/products/bulk",
            kind="bulk",
            expect=(201,),
            tenant=tenant,
            tenant_id=tenant_id,
            json={"items": items},
        )

    async def read_product(self, tenant: str, tenant_id: str, product_id: str) -> Answer:
        return await self.call(
            "CATALOG_URL",
            "GET",
            f"/v1/products/{product_id}",
            kind="read",
            tenant=tenant,
            tenant_id=tenant_id,
        )

    async def create_customer(self, tenant: str, tenant_id: str, email: str) -> Answer:
        return await self.call(
            "ORDERS_URL",
            "POST",
            "/v1/customers",
            kind="setup",
            expect=(201, 409),
            tenant=tenant,
            tenant_id=tenant_id,
            json={"email": email},
        )

    async def place_order(
        self,
        tenant: str,
        tenant_id: str,
        email: str,
        product_id: str,
        *,
        kind: str = "order",
        tolerate: tuple[int, ...] = (),
    ) -> Answer:
        return await self.call(
            "ORDERS_URL",
            "POST",
            "/v1/orders",
            kind=kind,
            expect=(201,),
            tenant=tenant,
            tenant_id=tenant_id,
            # A retry with the same key creates nothing: a demo that retries never orders twice.
            headers={"Idempotency-Key": str(uuid.uuid4())},
            json={"customer_email": email, "items": [{"product_id": product_id, "quantity": 1}]},
            tolerate=tolerate,
        )

    # ------------------------------------------------------------------ usage, migrator

    async def usage(self, tenant_id: str) -> Answer:
        # Not attributed to the tenant: usage meters the tenant's catalog/orders requests, not this.
        return await self.call("USAGE_URL", "GET", f"/v1/usage/{tenant_id}", kind="control")

    async def migrations(self, tenant_id: str) -> Answer:
        return await self.call(
            "MIGRATOR_URL",
            "GET",
            "/v1/migrations",
            kind="control",
            params={"tenant_id": tenant_id, "limit": "20"},
        )

    async def placement_plan(self) -> Answer | Missing:
        answer = await self.call("MIGRATOR_URL", "GET", "/v1/placement/plan", kind="control", tolerate=(404,))
        if answer.status == 404:
            return Missing("advisor (GET /v1/placement/plan)", 404)
        return answer
