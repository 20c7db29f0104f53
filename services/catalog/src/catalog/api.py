"""HTTP routes (CONTRACT.md §3): parse, call a use case, shape the response. Nothing else."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from servicekit.http import ModelResponse, TenantId, usecases
from servicekit.pagination import Cursor, Limit
from servicekit.validation import NO_NUL_PATTERN

from catalog import schemas
from catalog.repository import Row
from catalog.usecases import Catalog

uses = usecases(Catalog)

router = APIRouter(prefix="/v1")


def _product(row: Row) -> schemas.Product:
    return schemas.Product.model_validate(dict(row))


def _category(row: Row) -> schemas.Category:
    return schemas.Category.model_validate(dict(row))


@router.post(
    "/products", status_code=status.HTTP_201_CREATED, tags=["products"], response_model=schemas.Product
)
async def create_product(body: schemas.ProductCreate, tenant: TenantId, request: Request) -> ModelResponse:
    (row,) = await uses(request).create_products(tenant, [body.model_dump()])
    return ModelResponse(_product(row), status.HTTP_201_CREATED)


@router.post("/products/bulk", status_code=status.HTTP_201_CREATED, tags=["products"])
async def create_products(
    body: schemas.BulkCreate, tenant: TenantId, request: Request
) -> schemas.BulkCreated:
    rows = await uses(request).create_products(tenant, [item.model_dump() for item in body.items])
    return schemas.BulkCreated(created=len(rows), ids=[row["id"] for row in rows])


@router.get("/products", tags=["products"], response_model=schemas.ProductPage)
async def list_products(
    tenant: TenantId,
    request: Request,
    status: schemas.Status | None = None,
    q: Annotated[str | None, Query(max_length=500, pattern=NO_NUL_PATTERN)] = None,
    category_id: uuid.UUID | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ModelResponse:
    page = await uses(request).list_products(
        tenant, status=status, q=q, category_id=category_id, limit=limit, cursor=cursor
    )
    return ModelResponse(
        schemas.ProductPage(items=[_product(r) for r in page.items], next_cursor=page.next_cursor)
    )


@router.get("/products/{product_id}", tags=["products"], response_model=schemas.Product)
async def get_product(product_id: uuid.UUID, tenant: TenantId, request: Request) -> ModelResponse:
    return ModelResponse(_product(await uses(request).get_product(tenant, product_id)))


@router.patch("/products/{product_id}", tags=["products"], response_model=schemas.Product)
async def update_product(
    product_id: uuid.UUID, body: schemas.ProductPatch, tenant: TenantId, request: Request
) -> ModelResponse:
    return ModelResponse(_product(await uses(request).update_product(tenant, product_id, body.changes())))


@router.delete("/products/{product_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["products"])
async def delete_product(product_id: uuid.UUID, tenant: TenantId, request: Request) -> Response:
    await uses(request).delete_product(tenant, product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/categories", status_code=status.HTTP_201_CREATED, tags=["categories"], response_model=schemas.Category
)
async def create_category(body: schemas.CategoryCreate, tenant: TenantId, request: Request) -> ModelResponse:
    category = _category(await uses(request).create_category(tenant, body.model_dump()))
    return ModelResponse(category, status.HTTP_201_CREATED)


@router.get("/categories", tags=["categories"], response_model=schemas.CategoryPage)
async def list_categories(
    tenant: TenantId, request: Request, limit: Limit = 50, cursor: Cursor = None
) -> ModelResponse:
    page = await uses(request).list_categories(tenant, limit=limit, cursor=cursor)
    return ModelResponse(
        schemas.CategoryPage(items=[_category(r) for r in page.items], next_cursor=page.next_cursor)
    )


@router.get("/categories/{category_id}", tags=["categories"], response_model=schemas.Category)
async def get_category(category_id: uuid.UUID, tenant: TenantId, request: Request) -> ModelResponse:
    return ModelResponse(_category(await uses(request).get_category(tenant, category_id)))


@router.patch("/categories/{category_id}", tags=["categories"], response_model=schemas.Category)
async def update_category(
    category_id: uuid.UUID, body: schemas.CategoryPatch, tenant: TenantId, request: Request
) -> ModelResponse:
    return ModelResponse(_category(await uses(request).update_category(tenant, category_id, body.changes())))
