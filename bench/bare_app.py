"""The baseline of `services.*`: a bare FastAPI + asyncpg app running the same SQL as the services'
endpoints (tenant context, the same statements, one transaction), without their layers.

Run as `python -m bench.bare_app` with SHARED_DATABASE_URL and PORT in the environment.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Request

POOL_SIZE = 10
BARE_TOPIC = "bench.bare.v1"  # its events are relayed like the service's (bench_services)
TenantHeader = Annotated[uuid.UUID, Header()]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["SHARED_DATABASE_URL"], min_size=2, max_size=POOL_SIZE
    )
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)

PRODUCT = (
    "SELECT id, name, description, sku, price, compare_price, cost_price, status, inventory, seo, "
    "attributes, category_id, created_at, updated_at FROM products WHERE id = $1 AND deleted_at IS NULL"
)


@app.get("/v1/products/{product_id}")
async def get_product(product_id: uuid.UUID, request: Request, x_tenant_id: TenantHeader) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(x_tenant_id))
        row = await conn.fetchrow(PRODUCT, product_id)
    if row is None:
        raise HTTPException(404)
    return {k: (str(v) if isinstance(v, Decimal | uuid.UUID) else v) for k, v in dict(row).items()}


@app.post("/v1/orders", status_code=201)
async def post_order(request: Request, x_tenant_id: TenantHeader) -> dict[str, Any]:
    body = await request.json()
    items = [(uuid.UUID(i["product_id"]), int(i["quantity"])) for i in body["items"]]
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(x_tenant_id))
        rows = await conn.fetch(
            "SELECT id, name, sku, price, status, deleted FROM order_products WHERE id = ANY($1::uuid[])",
            [pid for pid, _ in items],
        )
        prices = {r["id"]: r for r in rows if r["status"] == "active" and not r["deleted"]}
        if len(prices) != len({pid for pid, _ in items}):
            raise HTTPException(422)
        lines = [
            {"product_id": str(pid), "name": prices[pid]["name"], "sku": prices[pid]["sku"], "quantity": q,
             "unit_price": str(prices[pid]["price"]), "line_total": str(prices[pid]["price"] * q)}
            for pid, q in items
        ]  # fmt: skip
        total = sum((prices[pid]["price"] * q for pid, q in items), Decimal(0))
        customer_id = await conn.fetchval(
            """INSERT INTO customers (email, total_orders, total_spent, last_order_date)
               VALUES ($1, 1, $2, now())
               ON CONFLICT (tenant_id, email) DO UPDATE SET total_orders = customers.total_orders + 1,
                   total_spent = customers.total_spent + excluded.total_spent, last_order_date = now(),
                   updated_at = now()
               RETURNING id""",
            body["customer_email"],
            total,
        )
        await conn.execute(
            "INSERT INTO sequences (name, last_value) VALUES ('order_number', 1000) ON CONFLICT DO NOTHING"
        )
        number = await conn.fetchval(
            "UPDATE sequences SET last_value = last_value + 1 "
            "WHERE name = 'order_number' RETURNING last_value"
        )
        order = await conn.fetchrow(
            """INSERT INTO orders (order_number, customer_email, customer_id, total_amount, subtotal_amount,
                                   currency, items)
               VALUES ($1, $2, $3, $4, $4, $5, $6::jsonb) RETURNING id, created_at""",
            str(number),
            body["customer_email"],
            customer_id,
            total,
            body.get("currency", "USD"),
            json.dumps(lines),
        )
        event = {
            "order_id": str(order["id"]),
            "order_number": str(number),
            "items": lines,
            "total": str(total),
        }
        # events.outbox.record's statement: the tenant's lock orders its events by commit.
        await conn.execute(
            "WITH tenant_lock AS MATERIALIZED ("
            "SELECT pg_advisory_xact_lock(hashtextextended('outbox:' || $2::uuid::text, 0))) "
            "INSERT INTO outbox (event_id, tenant_id, topic, event_type, payload) "
            "SELECT $1, $2, $3, 'order.placed', $4::jsonb FROM tenant_lock",
            uuid.uuid4(),
            x_tenant_id,
            BARE_TOPIC,
            json.dumps(event),
        )
    return {"id": str(order["id"]), "order_number": str(number), "total_amount": str(total), "items": lines}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning", access_log=False)
