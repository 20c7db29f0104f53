"""The services under fuzz: each entry of FUZZ_TARGETS builds one app (fresh, with its own pools and
broker, since its lifespan runs on schemathesis' event loop) and the headers its requests need.

A service added later adds one line to FUZZ_TARGETS."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from catalog.app import create_app as create_catalog
from fastapi import FastAPI
from orders.app import create_app as create_orders
from tenancy.app import create_app as create_tenancy

from tests.integration.catalog.conftest import catalog_settings
from tests.integration.orders.conftest import orders_settings
from tests.integration.tenancy.conftest import tenancy_settings
from tests.integration.tenantdb.conftest import create_tenant
from tests.support import fuzz

TENANT_HEADER = "X-Tenant-ID"


@dataclass
class FuzzTarget:
    app: FastAPI
    headers: dict[str, str] = field(default_factory=dict)


def _new_tenant(stack_env: dict[str, str]) -> uuid.UUID:
    # Fixtures of a schemathesis test are synchronous: the tenant is made on a loop of its own.
    with start_blocking_portal() as portal:
        tenant_id: uuid.UUID = portal.call(create_tenant, stack_env["PLATFORM_DATABASE_URL"])
    return tenant_id


def _tenant_scoped(
    create_app: Callable[[Any], FastAPI], settings: Callable[..., Any]
) -> Callable[..., FuzzTarget]:
    def build(stack_env: dict[str, str]) -> FuzzTarget:
        tenant_id = _new_tenant(stack_env)
        return FuzzTarget(create_app(settings(stack_env)), {TENANT_HEADER: str(tenant_id)})

    return build


def _tenancy(stack_env: dict[str, str]) -> FuzzTarget:
    return FuzzTarget(create_tenancy(tenancy_settings(stack_env)))


FUZZ_TARGETS: dict[str, Callable[[dict[str, str]], FuzzTarget]] = {
    "tenancy": _tenancy,
    "catalog": _tenant_scoped(create_catalog, catalog_settings),
    "orders": _tenant_scoped(create_orders, orders_settings),
}


@pytest.fixture(scope="module", params=sorted(FUZZ_TARGETS))
def fuzz_target(request: pytest.FixtureRequest, stack_env: dict[str, str]) -> Iterator[FuzzTarget]:
    target = FUZZ_TARGETS[request.param](stack_env)
    try:
        yield target
    finally:
        fuzz.stop_apps()
