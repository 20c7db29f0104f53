"""Property: whatever tenants, rows and operations, a unit of work through tenantdb never returns or
changes another tenant's row, on either placement. An in-memory model is the oracle."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select, update
from tenantdb import TenantDB
from tenantschema.tables import products

from tests.integration.tenantdb.conftest import (
    create_tenant,
    move_to_dedicated,
    retire_tenants,
    tenantdb_settings,
)
from tests.support.databases import role_url

# Tenants 0-2 share the database, 3-4 have their own: isolation must hold within and across both.
KINDS = ("shared", "shared", "shared", "dedicated", "dedicated")


@dataclass(frozen=True)
class Op:
    tenant: int
    action: str  # insert | list | rename_all | delete_some
    value: str


ops = st.lists(
    st.builds(
        Op,
        tenant=st.integers(0, len(KINDS) - 1),
        action=st.sampled_from(["insert", "insert", "list", "rename_all", "delete_some"]),
        value=st.text(alphabet="abcdefgh", min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def tenants(stack_env: dict[str, str]) -> list[uuid.UUID]:
    async def make() -> list[uuid.UUID]:
        made = []
        for kind in KINDS:
            tenant = await create_tenant(role_url(stack_env, "tenancy"))
            if kind == "dedicated":
                await move_to_dedicated(stack_env, tenant)
            made.append(tenant)
        return made

    made = asyncio.run(make())
    yield made  # type: ignore[misc]

    asyncio.run(retire_tenants(stack_env, made))


async def _run(tdb: TenantDB, tenants: list[uuid.UUID], program: list[Op], run_tag: str) -> None:
    model: dict[int, dict[str, str]] = {i: {} for i in range(len(tenants))}  # tenant -> sku -> name
    counter = 0
    for op in program:
        tenant = tenants[op.tenant]
        async with tdb.unit_of_work(tenant) as uow:
            c = uow.connection
            mine = products.c.sku.like(f"{run_tag}-%")  # rows of this example only
            if op.action == "insert":
                counter += 1
                sku = f"{run_tag}-{counter}"
                await c.execute(insert(products).values(name=op.value, sku=sku, price=1))
                model[op.tenant][sku] = op.value
            elif op.action == "rename_all":
                result = await c.execute(update(products).where(mine).values(name=op.value))
                assert result.rowcount == len(model[op.tenant])
                model[op.tenant] = dict.fromkeys(model[op.tenant], op.value)
            elif op.action == "delete_some":
                result = await c.execute(delete(products).where(mine, products.c.name == op.value))
                doomed = {s for s, n in model[op.tenant].items() if n == op.value}
                assert result.rowcount == len(doomed)
                model[op.tenant] = {s: n for s, n in model[op.tenant].items() if s not in doomed}
            rows = (await c.execute(select(products.c.sku, products.c.name).where(mine))).all()
            assert dict(rows) == model[op.tenant]
            await uow.commit()
    # Every tenant, at the end, holds exactly its own rows.
    for index, tenant in enumerate(tenants):
        async with tdb.unit_of_work(tenant, readonly=True) as uow:
            rows = (
                await uow.connection.execute(
                    select(products.c.sku, products.c.name).where(products.c.sku.like(f"{run_tag}-%"))
                )
            ).all()
            assert dict(rows) == model[index]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=ops)
def test_tenantdb_never_crosses_tenants(
    stack_env: dict[str, str], tenants: list[uuid.UUID], program: list[Op]
) -> None:
    async def scenario() -> None:
        tdb = TenantDB(tenantdb_settings(stack_env))
        try:
            await _run(tdb, tenants, program, uuid.uuid4().hex[:10])
        finally:
            await tdb.close()

    asyncio.run(scenario())
