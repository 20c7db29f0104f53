"""The services under fuzz: each entry of FUZZ_TARGETS builds one app (fresh, with its own pools and
broker, since its lifespan runs on schemathesis' event loop), the headers its requests need, and a seed
that makes a few real resources so generated requests reach the logic behind the 404s.

A service added later adds one line to FUZZ_TARGETS (and a seed if it has resources to point at)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import requests
from anyio.from_thread import start_blocking_portal
from catalog.app import create_app as create_catalog
from fastapi import FastAPI
from migrator.app import create_app as create_migrator
from orders.app import create_app as create_orders
from tenancy.app import create_app as create_tenancy
from tenantschema.urls import libpq_url, with_database
from usage.app import create_app as create_usage

from tests.integration.catalog.conftest import catalog_settings
from tests.integration.migrator.conftest import migrator_settings
from tests.integration.orders.conftest import orders_settings
from tests.integration.tenancy.conftest import tenancy_settings
from tests.integration.tenantdb.conftest import create_tenant
from tests.integration.usage.conftest import end_offsets, start_group_at, usage_settings
from tests.support import fuzz
from tests.support.databases import role_url
from tests.support.stack_services import stack_service_paused

TENANT_HEADER = "X-Tenant-ID"
BULK_ITEMS = 3  # at most, per generated bulk request


@dataclass
class FuzzTarget:
    app: FastAPI
    headers: dict[str, str] = field(default_factory=dict)
    seed: fuzz.Seed | None = None
    # Run after the fuzz: undo what it left that another test's process would act on.
    cleanup: Callable[[], None] | None = None
    # A service of the stack (CI starts them) paused meanwhile, so it never acts on what the fuzz makes.
    pause_stack_service: str | None = None


def _run(function: Callable[..., Any], *args: Any) -> Any:
    # Fixtures of these tests are synchronous: async set-up runs on a loop of its own.
    with start_blocking_portal() as portal:
        return portal.call(function, *args)


def _created(response: requests.Response) -> str:
    assert response.status_code == 201, response.text
    ident: str = response.json()["id"]
    return ident


def _point_at(case: Any, resources: dict[str, dict[str, str]]) -> None:
    """Aim an operation on one resource at one that exists (GET/PATCH; DELETE keeps its random id)."""
    parameters = resources.get(case.operation.label)
    if parameters and isinstance(case.path_parameters, dict):
        case.path_parameters.update(parameters)


def _replace_ids(case: Any, names: dict[str, str]) -> None:
    """In a generated body, a well-formed id of a reference becomes one that exists."""
    if not isinstance(case.body, dict):
        return
    for name, value in names.items():
        if isinstance(case.body.get(name), str) and _is_uuid(case.body[name]):
            case.body[name] = value


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _unique(case: Any, name: str, make: Callable[[str], str]) -> None:
    """A unique value in place of a generated one: generation is deterministic and the database keeps
    what earlier runs made, so the same subdomain or sku would be a 409 on every later run. Only values
    without NUL are changed (those with one are the cases meant to be refused)."""
    if isinstance(case.body, dict) and isinstance(case.body.get(name), str) and "\x00" not in case.body[name]:
        case.body[name] = make(case.body[name])


def _unique_in(item: Any, name: str) -> None:
    if isinstance(item, dict) and isinstance(item.get(name), str) and "\x00" not in item[name]:
        item[name] = f"{item[name][:91]}-{_suffix()}"


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _tenancy(stack_env: dict[str, str]) -> FuzzTarget:
    def seed(session: requests.Session) -> fuzz.Prepare:
        tenant = _created(
            session.post("/v1/tenants", json={"name": "Fuzzed", "subdomain": f"f-{uuid.uuid4().hex}"})
        )
        on_tenant = {"tenant_id": tenant}
        resources = {"GET /v1/tenants/{tenant_id}": on_tenant, "PATCH /v1/tenants/{tenant_id}": on_tenant}

        def prepare(case: Any) -> None:
            _point_at(case, resources)
            if case.operation.label == "POST /v1/tenants":
                _unique(case, "subdomain", lambda value: f"{value[:41]}-{_suffix()}")
                _unique(case, "custom_domain", lambda value: f"r{_suffix()}.{value}"[:253])

        return prepare

    return FuzzTarget(create_tenancy(tenancy_settings(stack_env)), seed=seed)


def _catalog(stack_env: dict[str, str]) -> FuzzTarget:
    tenant_id = _run(create_tenant, role_url(stack_env, "tenancy"))

    def seed(session: requests.Session) -> fuzz.Prepare:
        category = _created(session.post("/v1/categories", json={"name": "C", "slug": "fuzz"}))
        product = _created(session.post("/v1/products", json={"name": "P", "price": "1.00"}))
        on_product, on_category = {"product_id": product}, {"category_id": category}
        resources = {
            "GET /v1/products/{product_id}": on_product,
            "PATCH /v1/products/{product_id}": on_product,
            "GET /v1/categories/{category_id}": on_category,
            "PATCH /v1/categories/{category_id}": on_category,
        }

        def prepare(case: Any) -> None:
            _point_at(case, resources)
            _replace_ids(case, {"category_id": category, "parent_id": category})
            _unique(case, "sku", lambda value: f"{value[:91]}-{_suffix()}")
            _unique(case, "slug", lambda value: f"{value[:91]}-{_suffix()}")
            if case.operation.label == "POST /v1/products/bulk" and isinstance(case.body, dict):
                items = case.body.get("items")
                # Every product made is an event the orders tests' consumer must work through after
                # the fuzz: a valid bulk of 1000 would cost it seconds each. The 1000-item bound is
                # the hostile-input tests' to check.
                if isinstance(items, list) and len(items) <= 1000:
                    case.body["items"] = items[:BULK_ITEMS]
                    for item in case.body["items"]:
                        _unique_in(item, "sku")

        return prepare

    settings = catalog_settings(stack_env)
    return FuzzTarget(create_catalog(settings), {TENANT_HEADER: str(tenant_id)}, seed)


async def _add_products(
    stack_env: dict[str, str], tenant_id: uuid.UUID, prices: dict[uuid.UUID, str]
) -> None:
    """Into the orders' read model directly (the catalog need not run): as its consumer would."""
    admin = await asyncpg.connect(libpq_url(with_database(stack_env["ADMIN_DATABASE_URL"], "shared")))
    try:
        await admin.executemany(
            "INSERT INTO order_products (tenant_id, id, name, sku, price, status, deleted, version_at) "
            "VALUES ($1, $2, 'Fuzzed', NULL, $3::numeric, 'active', false, $4)",
            [(tenant_id, pid, price, datetime.now(UTC)) for pid, price in prices.items()],
        )
    finally:
        await admin.close()


def _orders(stack_env: dict[str, str]) -> FuzzTarget:
    tenant_id = _run(create_tenant, role_url(stack_env, "tenancy"))
    # The cheapest and the dearest a product can be: generated quantities overflow the totals often.
    cheap, dear = uuid.uuid4(), uuid.uuid4()
    _run(_add_products, stack_env, tenant_id, {cheap: "0.01", dear: "99999999.99"})

    def seed(session: requests.Session) -> fuzz.Prepare:
        customer = _created(session.post("/v1/customers", json={"email": "fuzz@example.com"}))
        items = [{"product_id": str(cheap), "quantity": 1}]
        order = _created(
            session.post("/v1/orders", json={"customer_email": "fuzz@example.com", "items": items})
        )
        resources = {
            "GET /v1/customers/{customer_id}": {"customer_id": customer},
            "GET /v1/orders/{order_id}": {"order_id": order},
            "PATCH /v1/orders/{order_id}": {"order_id": order},
        }

        def prepare(case: Any) -> None:
            _point_at(case, resources)
            if case.operation.label == "POST /v1/customers":
                _unique(case, "email", lambda value: f"{_suffix()}{value}"[-255:])
            if case.operation.label == "POST /v1/orders" and isinstance(case.body, dict):
                lines = case.body.get("items")
                for i, line in enumerate(lines if isinstance(lines, list) else []):
                    product_id = line.get("product_id") if isinstance(line, dict) else None
                    if isinstance(product_id, str) and _is_uuid(product_id):
                        line["product_id"] = str(dear if i % 2 else cheap)

        return prepare

    return FuzzTarget(create_orders(orders_settings(stack_env)), {TENANT_HEADER: str(tenant_id)}, seed)


def _usage(stack_env: dict[str, str]) -> FuzzTarget:
    tenant_id = _run(create_tenant, role_url(stack_env, "tenancy"))
    settings = usage_settings(stack_env, reconcile_enabled=False)
    # Its consumer starts where the topics end: the fuzz is about the API, not the backlog.
    offsets = _run(end_offsets, stack_env["KAFKA_BOOTSTRAP_SERVERS"])
    _run(start_group_at, stack_env, settings.usage_group_id, offsets)

    def seed(session: requests.Session) -> fuzz.Prepare:
        resources = {"GET /v1/usage/{tenant_id}": {"tenant_id": str(tenant_id)}}

        def prepare(case: Any) -> None:
            _point_at(case, resources)

        return prepare

    return FuzzTarget(create_usage(settings), seed=seed)


PLAN_OPERATIONS = frozenset({"GET /v1/placement/plan", "POST /v1/placement/plan/apply"})


def _migrator(stack_env: dict[str, str]) -> FuzzTarget:
    # Its runner off: the fuzz is about the API; what it asks for stays pending and is cancelled after.
    settings = migrator_settings(stack_env, migrator_runner_enabled=False)
    tenant_id = _run(create_tenant, role_url(stack_env, "tenancy"))

    def seed(session: requests.Session) -> fuzz.Prepare:
        asked = session.post("/v1/migrations", json={"tenant_id": str(tenant_id)})
        assert asked.status_code == 202, asked.text
        on_migration = {"migration_id": asked.json()["id"]}
        resources = {
            "GET /v1/migrations/{migration_id}": on_migration,
            "POST /v1/migrations/{migration_id}/cancel": on_migration,
            "POST /v1/migrations/{migration_id}/cleanup": on_migration,
        }

        def prepare(case: Any) -> None:
            _point_at(case, resources)
            _replace_ids(case, {"tenant_id": str(tenant_id)})
            if case.operation.label in PLAN_OPERATIONS:
                # Without tenant_id the plan is the whole fleet's, and its apply would queue moves of
                # every other test's tenants: kept to the fuzz's own tenant.
                query = case.query if isinstance(case.query, dict) else {}
                case.query = {**query, "tenant_id": [str(tenant_id)]}

        return prepare

    def cleanup() -> None:
        # A pending move left behind would be run by the next runner that polls (another test's).
        _run(_cancel_active_migrations, stack_env["OWNER_DATABASE_URL"], tenant_id)

    return FuzzTarget(create_migrator(settings), seed=seed, cleanup=cleanup, pause_stack_service="migrator")


async def _cancel_active_migrations(owner_url: str, tenant_id: uuid.UUID) -> None:
    connection = await asyncpg.connect(libpq_url(with_database(owner_url, "platform")))
    try:
        await connection.execute(
            "UPDATE tenant_migrations SET status = 'cancelled', completed_at = now()"
            " WHERE tenant_id = $1 AND status IN ('pending', 'in_progress')",
            tenant_id,
        )
    finally:
        await connection.close()


FUZZ_TARGETS: dict[str, Callable[[dict[str, str]], FuzzTarget]] = {
    "tenancy": _tenancy,
    "catalog": _catalog,
    "orders": _orders,
    "usage": _usage,
    "migrator": _migrator,
}


@pytest.fixture(scope="module", params=sorted(FUZZ_TARGETS))
def fuzz_target(request: pytest.FixtureRequest, stack_env: dict[str, str]) -> Iterator[FuzzTarget]:
    with contextlib.ExitStack() as stack:
        target = FUZZ_TARGETS[request.param](stack_env)
        if target.pause_stack_service:
            stack.enter_context(stack_service_paused(target.pause_stack_service))
        try:
            yield target
        finally:
            fuzz.stop_apps()
            if target.cleanup is not None:
                target.cleanup()
