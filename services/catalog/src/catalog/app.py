"""The composition root of the catalog: the servicekit factory with the catalog's routes, use cases,
subscriptions and topic."""

from __future__ import annotations

from events import topics
from fastapi import FastAPI
from servicekit.app import Publication, create_tenant_service

import catalog
from catalog import api, consumers
from catalog.settings import CatalogSettings, get_settings
from catalog.usecases import Catalog

VERSION = "0.1.0"


def create_app(settings: CatalogSettings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    return create_tenant_service(
        settings or get_settings(),
        version=VERSION,
        description=catalog.__doc__ or "",
        routers=[api.router],
        usecases=Catalog,
        register=consumers.register,
        publishes=[
            Publication(
                topics.PRODUCTS,
                "product.created, product.updated, product.deleted; key: the tenant id; "
                "data: events.models.ProductData",
            )
        ],
        freeze_gc=freeze_gc,
    )
