"""The composition root of orders: the servicekit factory with the orders' routes, use cases,
subscriptions and topic."""

from __future__ import annotations

from events import topics
from fastapi import FastAPI
from servicekit.app import Publication, create_tenant_service

import orders
from orders import api, consumers
from orders.settings import OrdersSettings, get_settings
from orders.usecases import OrdersService

VERSION = "0.1.0"


def create_app(settings: OrdersSettings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    return create_tenant_service(
        settings or get_settings(),
        version=VERSION,
        description=orders.__doc__ or "",
        routers=[api.router],
        usecases=OrdersService,
        register=consumers.register,
        publishes=[
            Publication(
                topics.ORDERS,
                "order.placed (data: events.models.OrderPlaced), order.status_changed "
                "(data: events.models.OrderStatusChanged); key: the tenant id",
            )
        ],
        freeze_gc=freeze_gc,
    )
