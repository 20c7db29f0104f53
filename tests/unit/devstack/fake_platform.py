"""An in-memory stand-in for the five services' HTTP surface, for the demo driver's unit tests.

Just enough of CONTRACT.md §3 for the scenario: tenants, bulk products, customers, orders (a 422
until the "read model" has seen the product, as orders answers), usage, migrations. With
`automatic=True` a tenant past 10,000 products or on the enterprise plan is moved by the fake
migrator: a migration appears and goes through its phases, one per poll, and flips the tenant.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

PHASES = ("provision", "capture", "copy", "catch_up", "verify", "cutover", "cleanup")
URLS = {
    "TENANCY_URL": "http://tenancy.test",
    "CATALOG_URL": "http://catalog.test",
    "ORDERS_URL": "http://orders.test",
    "USAGE_URL": "http://usage.test",
    "MIGRATOR_URL": "http://migrator.test",
}


@dataclass
class FakePlatform:
    automatic: bool = True
    plan_status: int = 404  # GET /v1/placement/plan: 404 (advisor not merged) or 200
    fail_orders_every: int = 0  # answer every Nth order with a 503
    read_model_lag: int = 2  # orders refused (422) before the read model "has" a product
    received: Counter[str] = field(default_factory=Counter)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    migrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders_seen: int = 0
    refusals: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        path = request.url.path
        self.received[host] += 1
        tenant_id = request.headers.get("X-Tenant-ID")
        if tenant_id is not None:
            self.requests[tenant_id] = self.requests.get(tenant_id, 0) + 1
        body = json.loads(request.content) if request.content else None
        if host == "tenancy":
            return self._tenancy(request.method, path, body)
        if host == "catalog" and path == "/v1/products/bulk":
            assert tenant_id is not None
            assert len(body["items"]) <= 1000
            self.products[tenant_id] = self.products.get(tenant_id, 0) + len(body["items"])
            ids = [str(uuid.uuid4()) for _ in body["items"]]
            return httpx.Response(201, json={"created": len(ids), "ids": ids})
        if host == "catalog" and path.startswith("/v1/products/"):
            return httpx.Response(200, json={"id": path.rsplit("/", 1)[-1]})
        if host == "orders" and path == "/v1/customers":
            return httpx.Response(201, json={"email": body["email"]})
        if host == "orders" and path == "/v1/orders":
            if self.refusals < self.read_model_lag:
                self.refusals += 1
                return httpx.Response(422, json={"detail": "unknown product"})
            self.orders_seen += 1
            if self.fail_orders_every and self.orders_seen % self.fail_orders_every == 0:
                return httpx.Response(503, json={"detail": "try again"})
            return httpx.Response(201, json={"order_number": str(self.orders_seen)})
        if host == "usage":
            tid = path.rsplit("/", 1)[-1]
            return httpx.Response(
                200,
                json={
                    "tenant_id": tid,
                    "product_count": self.products.get(tid, 0),
                    "monthly_requests": self.requests.get(tid, 0),
                    "daily": [{"orders_count": 3}],
                    "thresholds_crossed": [{"metric": "products"}]
                    if self.products.get(tid, 0) >= 10_000
                    else [],
                },
            )
        if host == "migrator" and path == "/v1/migrations":
            return self._migrations(request.url.params["tenant_id"])
        if host == "migrator" and path == "/v1/placement/plan":
            if self.plan_status != 200:
                return httpx.Response(self.plan_status, json={"detail": "Not Found"})
            return httpx.Response(200, json=self.plan())
        return httpx.Response(404, json={"detail": f"no route {path}"})

    def _tenancy(self, method: str, path: str, body: Any) -> httpx.Response:
        if method == "POST":
            tid = str(uuid.uuid4())
            self.tenants[tid] = {"id": tid, **body, "tenant_type": "shared", "database_name": None}
            return httpx.Response(201, json=self.tenants[tid])
        tid = path.rsplit("/", 1)[-1]
        if method == "PATCH":
            self.tenants[tid].update(body)
        return httpx.Response(200, json=self.tenants[tid])

    def _migrations(self, tid: str) -> httpx.Response:
        tenant = self.tenants[tid]
        due = self.products.get(tid, 0) >= 10_000 or tenant.get("plan") == "enterprise"
        if self.automatic and due and tid not in self.migrations and tenant["tenant_type"] == "shared":
            self.migrations[tid] = {
                "id": str(uuid.uuid4()),
                "tenant_id": tid,
                "migration_type": "to_dedicated",
                "status": "in_progress",
                "phase": "provision",
                "reason": "products >= 10000" if self.products.get(tid, 0) >= 10_000 else "plan enterprise",
                "progress": {},
                "started_at": datetime.now(UTC).isoformat(),
            }
        migration = self.migrations.get(tid)
        if migration is not None and migration["phase"] != "cleanup":
            migration["phase"] = PHASES[PHASES.index(migration["phase"]) + 1]
            if migration["phase"] == "copy":
                migration["progress"]["tables"] = {"products": {"rows": 5, "total": 10}}
            if migration["phase"] == "cleanup":
                migration["progress"].update(freeze_ms=42.0, flipped_at=time.time())
                tenant.update(tenant_type="dedicated", database_name=f"tenant_{uuid.UUID(tid).hex}")
        return httpx.Response(200, json={"items": [migration] if migration else [], "next_cursor": None})

    def plan(self) -> dict[str, Any]:
        items = []
        for tid, tenant in self.tenants.items():
            dedicated = tenant["tenant_type"] == "dedicated"
            demote = dedicated and tenant["plan"] == "basic" and self.products.get(tid, 0) < 10_000
            items.append(
                {
                    "tenant_id": tid,
                    "placement": tenant["tenant_type"],
                    "recommended": "shared" if demote or not dedicated else "dedicated",
                    "reason": "below every threshold after a downgrade" if demote else "fits where it is",
                    "monthly_cost_now": 120.0 if dedicated else 2.5,
                    "monthly_cost_after": 2.5 if demote or not dedicated else 120.0,
                }
            )
        items.append({"tenant_id": str(uuid.uuid4()), "placement": "shared", "recommended": "shared"})
        return {"items": items, "totals": {"monthly_cost_now": 245.0, "monthly_cost_all_dedicated": 480.0}}
