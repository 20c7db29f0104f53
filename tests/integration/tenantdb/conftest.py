"""Fixtures for tenantdb against the dev stack: tenants on either placement, a TenantDB per test."""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import devstack
import pytest
from devstack.errors import DevstackError
from tenantdb import TenantDB, TenantDBSettings
from tenantdb.fencing import flip_placement
from tenantdb.provisioning import drop_dedicated, provision_dedicated

from tests.support.databases import role_settings, role_url

Kind = Literal["shared", "dedicated"]
MakeTenant = Callable[..., Awaitable[uuid.UUID]]
MakeTenantDB = Callable[..., TenantDB]


# Dedicated roles' passwords derive from this secret. It is the stack's own, because the stack's
# services (`make up`) run beside the tests: they share consumer groups with the apps the tests build
# and must be able to open the test tenants' dedicated databases. Reading it starts the stack if it is
# not up yet; it is read when a test needs it, not when tests are collected. Read from stack.env when
# the stack is up: ensure_stack() would wait for every service to be ready, and a package may have
# paused one of the stack's services (tests.support.stack_services) before its first test asks.
@functools.cache
def dedicated_secret() -> str:
    try:
        env = devstack.read_stack_env()
    except DevstackError:
        env = devstack.ensure_stack()
    return env.get("DEDICATED_PASSWORD_SECRET") or secrets.token_hex(16)


def tenantdb_settings(stack_env: dict[str, str], **overrides: Any) -> TenantDBSettings:
    # As catalog's role: a request-serving role that reads only the directory columns.
    values: dict[str, Any] = {
        **role_settings(stack_env, "catalog"),
        "dedicated_password_secret": dedicated_secret(),
    }
    return TenantDBSettings(**(values | overrides))


async def create_tenant(platform_url: str, *, status: str = "active") -> uuid.UUID:
    """Insert a tenant; `platform_url` must log in as tenancy's role (`role_url(stack_env, "tenancy")`),
    the only one that writes `tenants`."""
    tenant_id = uuid.uuid4()
    connection = await asyncpg.connect(platform_url)
    try:
        await connection.execute(
            "INSERT INTO tenants (id, name, subdomain, status) VALUES ($1, $2, $3, $4)",
            tenant_id,
            f"Test {tenant_id.hex[:8]}",
            f"t-{tenant_id.hex}",
            status,
        )
    finally:
        await connection.close()
    return tenant_id


async def move_to_dedicated(stack_env: dict[str, str], tenant_id: uuid.UUID) -> str:
    """Provision the tenant's database and flip the directory (no data copy: tests start empty)."""
    database = await provision_dedicated(
        stack_env["ADMIN_DATABASE_URL"], stack_env["OWNER_DATABASE_URL"], tenant_id, dedicated_secret()
    )
    platform = await asyncpg.connect(role_url(stack_env, "migrator"))
    try:
        await flip_placement(platform, tenant_id, tenant_type="dedicated", database_name=database)
    finally:
        await platform.close()
    return database


@asynccontextmanager
async def tenant_factory(stack_env: dict[str, str]) -> AsyncIterator[MakeTenant]:
    """Make tenants on either placement; when done, retire every one of them."""
    made: list[uuid.UUID] = []

    async def make(kind: Kind = "shared", *, status: str = "active") -> uuid.UUID:
        tenant_id = await create_tenant(role_url(stack_env, "tenancy"), status=status)
        made.append(tenant_id)
        if kind == "dedicated":
            await move_to_dedicated(stack_env, tenant_id)
        return tenant_id

    try:
        yield make
    finally:
        await retire_tenants(stack_env, made)


@pytest.fixture
async def make_tenant(stack_env: dict[str, str]) -> AsyncIterator[MakeTenant]:
    async with tenant_factory(stack_env) as make:
        yield make


async def retire_tenants(stack_env: dict[str, str], tenants: list[uuid.UUID]) -> None:
    """Mark the tenants deleted (no relay keeps listing their databases), then drop any dedicated
    database a test gave them (a move during the test counts too)."""
    platform = await asyncpg.connect(role_url(stack_env, "tenancy"))
    try:
        await platform.execute("UPDATE tenants SET status = 'deleted' WHERE id = ANY($1::uuid[])", tenants)
    finally:
        await platform.close()
    for tenant_id in tenants:
        await drop_dedicated(stack_env["ADMIN_DATABASE_URL"], tenant_id)


@pytest.fixture
async def make_tenantdb(stack_env: dict[str, str]) -> AsyncIterator[MakeTenantDB]:
    made: list[TenantDB] = []

    def make(**overrides: Any) -> TenantDB:
        tdb = TenantDB(tenantdb_settings(stack_env, **overrides))
        made.append(tdb)
        return tdb

    yield make
    for tdb in made:
        await tdb.close()


@pytest.fixture
def tdb(make_tenantdb: MakeTenantDB) -> TenantDB:
    return make_tenantdb()
