"""tenantdb point reads vs a plain SQLAlchemy transaction and raw asyncpg, same data, same run.

A point read by primary key, each in its own transaction as a request would do it:
- tenantdb: `async with tdb.unit_of_work(tenant, readonly=True)` (shared: RLS context set; dedicated);
- baseline: the same statement in BEGIN ... COMMIT on a plain SQLAlchemy AsyncConnection (superuser on
  the same database, so RLS does not apply: the ratio is everything tenantdb and RLS add);
- reference: raw asyncpg, `async with conn.transaction(): fetchrow(...)`.
Variants run interleaved, one call each per iteration, so drift on the machine hits all alike.
The JSON value is the p50 latency; the ratio is tenantdb's p50 over the plain SQLAlchemy p50
(target <= 1.10 shared, <= 1.05 dedicated).
"""

from __future__ import annotations

import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import create_async_engine
from tenantdb import TenantDB, TenantDBSettings
from tenantdb.fencing import flip_placement
from tenantdb.provisioning import drop_dedicated, provision_dedicated
from tenantschema.tables import products
from tenantschema.urls import asyncpg_url, libpq_url, with_database

from bench import Measure

BENCHMARKS = ("tenantdb.point_read.shared", "tenantdb.point_read.dedicated")

TENANTS_IN_SHARED = 20
PRODUCTS_PER_TENANT = 10_000
ITERATIONS = 4000
WARMUP = 300


def _point_read() -> Select[Any]:
    return select(products).where(products.c.id == bindparam("id"))


RAW_SQL = "SELECT * FROM products WHERE id = $1"


async def _seed(admin_db_url: str, tenants: list[uuid.UUID], with_tenant_id: bool) -> None:
    conn = await asyncpg.connect(admin_db_url)
    try:
        if with_tenant_id:
            await conn.execute(
                """INSERT INTO products (tenant_id, name, description, sku, price, status)
                   SELECT t, 'Product ' || g, 'A product', 'SKU-' || g, (g % 500) + 0.99, 'active'
                   FROM unnest($1::uuid[]) AS t, generate_series(1, $2) AS g""",
                tenants,
                PRODUCTS_PER_TENANT,
            )
        else:
            await conn.execute(
                """INSERT INTO products (name, description, sku, price, status)
                   SELECT 'Product ' || g, 'A product', 'SKU-' || g, (g % 500) + 0.99, 'active'
                   FROM generate_series(1, $1) AS g""",
                PRODUCTS_PER_TENANT,
            )
        await conn.execute("ANALYZE products")
    finally:
        await conn.close()


async def _ids(admin_db_url: str, tenant: uuid.UUID | None) -> list[uuid.UUID]:
    conn = await asyncpg.connect(admin_db_url)
    try:
        if tenant is None:
            rows = await conn.fetch("SELECT id FROM products")
        else:
            rows = await conn.fetch("SELECT id FROM products WHERE tenant_id = $1", tenant)
        return [r["id"] for r in rows]
    finally:
        await conn.close()


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50 * 1e6, p99 * 1e6


async def _measure(
    variants: dict[str, Callable[[uuid.UUID], Awaitable[object]]], ids: list[uuid.UUID]
) -> dict[str, list[float]]:
    """Each iteration runs every variant once, in a rotating order, so drift hits all alike."""
    rng = random.Random(7)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        for _ in range(WARMUP):
            assert await fn(rng.choice(ids)) is not None
    order = list(variants.items())
    for i in range(ITERATIONS):
        product_id = rng.choice(ids)
        for name, fn in order[i % len(order) :] + order[: i % len(order)]:
            started = time.perf_counter()
            row = await fn(product_id)
            samples[name].append(time.perf_counter() - started)
            if row is None:
                raise AssertionError(f"{name}: product {product_id} not found")
    return samples


async def _compare(
    name: str, tdb: TenantDB, tenant: uuid.UUID, admin_db_url: str, ids: list[uuid.UUID]
) -> Measure:
    statement = _point_read()
    plain_engine = create_async_engine(asyncpg_url(admin_db_url), pool_size=1, max_overflow=0)
    raw = await asyncpg.connect(admin_db_url)

    async def through_tenantdb(product_id: uuid.UUID) -> object:
        async with tdb.unit_of_work(tenant, readonly=True) as uow:
            return (await uow.connection.execute(statement, {"id": product_id})).first()

    async def plain_sqlalchemy(product_id: uuid.UUID) -> object:
        async with plain_engine.connect() as connection, connection.begin():
            return (await connection.execute(statement, {"id": product_id})).first()

    async def raw_asyncpg(product_id: uuid.UUID) -> object:
        async with raw.transaction():
            return await raw.fetchrow(RAW_SQL, product_id)

    try:
        samples = await _measure(
            {"tenantdb": through_tenantdb, "sqlalchemy": plain_sqlalchemy, "asyncpg": raw_asyncpg}, ids
        )
    finally:
        await raw.close()
        await plain_engine.dispose()
    stats = {variant: _stats(s) for variant, s in samples.items()}
    for variant, (p50, p99) in stats.items():
        print(f"  {name:32} {variant:10} p50 {p50:8.1f} us   p99 {p99:8.1f} us", file=sys.stderr)
    value, baseline = stats["tenantdb"][0], stats["sqlalchemy"][0]
    print(
        f"  {name:32} ratio tenantdb/sqlalchemy {value / baseline:.3f} (p50), "
        f"{stats['tenantdb'][1] / stats['sqlalchemy'][1]:.3f} (p99); "
        f"sqlalchemy/asyncpg {baseline / stats['asyncpg'][0]:.3f} (p50)",
        file=sys.stderr,
    )
    return Measure(name, round(value, 2), "us_p50", round(baseline, 2))


async def run(selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    secret = secrets.token_hex(16)
    # Set-up and clean-up (insert, flip, delete tenants) as the schema owner; the measured TenantDB
    # logs in as catalog's role, as the catalog does.
    admin, owner = env["ADMIN_DATABASE_URL"], env["OWNER_DATABASE_URL"]
    shared_admin = libpq_url(with_database(admin, "shared"))
    tenants = [uuid.uuid4() for _ in range(TENANTS_IN_SHARED)]
    dedicated_tenant = uuid.uuid4()
    platform = await asyncpg.connect(owner)
    measures: list[Measure] = []
    tdb = TenantDB(
        TenantDBSettings(
            platform_database_url=env["CATALOG_PLATFORM_DATABASE_URL"],
            shared_database_url=env["CATALOG_SHARED_DATABASE_URL"],
            dedicated_password_secret=secret,
            shared_pool_size=1,
            shared_max_overflow=0,
            dedicated_pool_size=1,
            dedicated_max_overflow=0,
        )
    )
    try:
        for tenant in [*tenants, dedicated_tenant]:
            await platform.execute(
                "INSERT INTO tenants (id, name, subdomain) VALUES ($1, 'bench', $2)",
                tenant,
                f"b-{tenant.hex}",
            )
        if "tenantdb.point_read.shared" in selected:
            started = time.perf_counter()
            await _seed(shared_admin, tenants, with_tenant_id=True)
            print(
                f"  seeded {TENANTS_IN_SHARED * PRODUCTS_PER_TENANT} shared products "
                f"in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            ids = await _ids(shared_admin, tenants[0])
            measures.append(await _compare("tenantdb.point_read.shared", tdb, tenants[0], shared_admin, ids))
        if "tenantdb.point_read.dedicated" in selected:
            database = await provision_dedicated(admin, owner, dedicated_tenant, secret)
            await flip_placement(platform, dedicated_tenant, tenant_type="dedicated", database_name=database)
            dedicated_admin = libpq_url(with_database(admin, database))
            await _seed(dedicated_admin, [], with_tenant_id=False)
            ids = await _ids(dedicated_admin, None)
            measures.append(
                await _compare("tenantdb.point_read.dedicated", tdb, dedicated_tenant, dedicated_admin, ids)
            )
    finally:
        await tdb.close()
        conn = await asyncpg.connect(shared_admin)
        try:
            await conn.execute("DELETE FROM products WHERE tenant_id = ANY($1::uuid[])", tenants)
        finally:
            await conn.close()
        await drop_dedicated(admin, dedicated_tenant)
        await platform.execute("DELETE FROM tenants WHERE id = ANY($1::uuid[])", [*tenants, dedicated_tenant])
        await platform.close()
    return measures
