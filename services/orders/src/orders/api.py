"""HTTP routes: parse, call a use case, shape the response. Nothing else."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from servicekit.http import TenantId, usecases
from servicekit.pagination import Cursor, Limit
from servicekit.validation import NO_NUL_PATTERN

from orders import schemas
from orders.usecases import OrdersService

service = usecases(OrdersService)
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=NO_NUL_PATTERN)
]

router = APIRouter(prefix="/v1", tags=["orders"])


@router.post("/customers", status_code=201, response_model=schemas.Customer)
async def create_customer(
    body: schemas.CustomerCreate, tenant_id: TenantId, request: Request
) -> schemas.Customer:
    return await service(request).create_customer(tenant_id, body)


@router.get("/customers/{customer_id}", response_model=schemas.Customer)
async def get_customer(customer_id: uuid.UUID, tenant_id: TenantId, request: Request) -> schemas.Customer:
    return await service(request).get_customer(tenant_id, customer_id)


@router.post(
    "/orders",
    status_code=201,
    response_model=schemas.Order,
    responses={409: {"description": "Idempotency-Key reused with a different body"}},
)
async def place_order(
    body: schemas.OrderCreate,
    tenant_id: TenantId,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    result = await service(request).place_order(tenant_id, body, idempotency_key)
    # The stored body is returned as is, so a retry gets exactly what the first request got.
    return JSONResponse(result.body, status_code=result.status_code)


@router.get("/orders", response_model=schemas.OrderPage)
async def list_orders(
    tenant_id: TenantId,
    request: Request,
    status: schemas.Status | None = None,
    customer_email: str | None = Query(None, max_length=255, pattern=NO_NUL_PATTERN),
    limit: Limit = 50,
    cursor: Cursor = None,
) -> schemas.OrderPage:
    return await service(request).list_orders(
        tenant_id,
        status=status,
        customer_email=customer_email.strip().lower() if customer_email else None,
        limit=limit,
        cursor=cursor,
    )


@router.get("/orders/{order_id}", response_model=schemas.Order)
async def get_order(order_id: uuid.UUID, tenant_id: TenantId, request: Request) -> schemas.Order:
    return await service(request).get_order(tenant_id, order_id)


@router.patch("/orders/{order_id}", response_model=schemas.Order)
async def update_order(
    order_id: uuid.UUID, body: schemas.OrderStatusUpdate, tenant_id: TenantId, request: Request
) -> schemas.Order:
    return await service(request).change_status(tenant_id, order_id, body.status)
