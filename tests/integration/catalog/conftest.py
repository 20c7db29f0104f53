"""Fixtures for the catalog against the dev stack: one app for the session (its broker, relay and
counter running for real), and per test module one tenant on each placement, so every API test runs
for both. Tests use random SKUs, slugs and search words instead of cleaning tables."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord
from catalog.app import create_app
from catalog.settings import CatalogSettings
from fastapi import FastAPI
from tenantdb.provisioning import drop_dedicated

from tests.integration.tenantdb.conftest import Kind, create_tenant, dedicated_secret, move_to_dedicated
from tests.support.apps import serve
from tests.support.databases import role_settings, role_url
from tests.support.kafka import tail
from tests.support.relay import relay_settings

TENANT_HEADER = "X-Tenant-ID"


def catalog_settings(stack_env: dict[str, str], **overrides: Any) -> CatalogSettings:
    values: dict[str, Any] = {
        **role_settings(stack_env, "catalog"),
        "kafka_bootstrap_servers": stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        "dedicated_password_secret": dedicated_secret(),
        **relay_settings(stack_env),
    }
    return CatalogSettings(**(values | overrides))


@dataclass
class CatalogClient:
    """An HTTP client of the session's catalog app that sends one tenant's X-Tenant-ID."""

    http: httpx.AsyncClient
    tenant_id: uuid.UUID
    kind: Kind
    app: FastAPI
    kafka: str


@pytest.fixture(scope="session")
async def _dedicated_tenants(stack_env: dict[str, str]) -> AsyncIterator[list[uuid.UUID]]:
    """Dedicated tenants made for the catalog tests; dropped at the end, after the app stopped."""
    made: list[uuid.UUID] = []
    yield made
    platform = await asyncpg.connect(role_url(stack_env, "tenancy"))
    try:
        # Deleted first: no outbox relay keeps listing a database that is about to vanish.
        await platform.execute("UPDATE tenants SET status = 'deleted' WHERE id = ANY($1::uuid[])", made)
    finally:
        await platform.close()
    for tenant_id in made:
        await drop_dedicated(stack_env["ADMIN_DATABASE_URL"], tenant_id)


@pytest.fixture(scope="session")
async def catalog_app(
    stack_env: dict[str, str], _dedicated_tenants: list[uuid.UUID]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(catalog_settings(stack_env))
    async with serve(app) as client:
        yield app, client


@pytest.fixture
def anonymous(catalog_app: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    """The session app's client, without a tenant header."""
    return catalog_app[1]


async def new_tenant(
    stack_env: dict[str, str], kind: Kind, made: list[uuid.UUID], **kwargs: Any
) -> uuid.UUID:
    tenant_id = await create_tenant(role_url(stack_env, "tenancy"), **kwargs)
    if kind == "dedicated":
        made.append(tenant_id)
        await move_to_dedicated(stack_env, tenant_id)
    return tenant_id


@pytest.fixture(scope="module", params=["shared", "dedicated"])
async def catalog_client(
    request: pytest.FixtureRequest,
    stack_env: dict[str, str],
    catalog_app: tuple[FastAPI, httpx.AsyncClient],
    _dedicated_tenants: list[uuid.UUID],
) -> AsyncIterator[CatalogClient]:
    kind: Kind = request.param
    tenant_id = await new_tenant(stack_env, kind, _dedicated_tenants)
    app = catalog_app[0]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://service",
        headers={TENANT_HEADER: str(tenant_id)},
    ) as http:
        yield CatalogClient(http, tenant_id, kind, app, stack_env["KAFKA_BOOTSTRAP_SERVERS"])


@pytest.fixture
async def fresh_client(
    catalog_client: CatalogClient, stack_env: dict[str, str], _dedicated_tenants: list[uuid.UUID]
) -> AsyncIterator[CatalogClient]:
    """A new tenant on the same placement as `catalog_client`: for tests that count every event."""
    tenant_id = await new_tenant(stack_env, catalog_client.kind, _dedicated_tenants)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=catalog_client.app),
        base_url="http://service",
        headers={TENANT_HEADER: str(tenant_id)},
    ) as http:
        yield CatalogClient(http, tenant_id, catalog_client.kind, catalog_client.app, catalog_client.kafka)


@dataclass
class Record:
    key: bytes | None
    value: dict[str, Any]


@dataclass
class Records:
    """What `watch_records` saw: keys with the parsed values."""

    seen: list[Record] = field(default_factory=list)

    async def wait_for(
        self, predicate: Callable[[Record], bool], *, count: int = 1, timeout: float = 30.0
    ) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            matching = [r for r in self.seen if predicate(r)]
            if len(matching) >= count:
                return matching
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(matching)} of {count} expected records within {timeout}s")
            await asyncio.sleep(0.05)

    def of_tenant(self, tenant_id: uuid.UUID) -> list[Record]:
        return [r for r in self.seen if r.value.get("tenant_id") == str(tenant_id)]


@asynccontextmanager
async def watch_records(bootstrap: str, topic: str) -> AsyncIterator[Records]:
    """Every record on `topic` from now on (positions resolved before the test acts)."""
    records = Records()

    def keep(message: ConsumerRecord[bytes, bytes]) -> None:
        records.seen.append(Record(message.key, json.loads(message.value)))

    async with tail(bootstrap, topic, keep):
        yield records
