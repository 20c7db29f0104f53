"""The composition root: everything the orders service runs is built here and handed down."""

from __future__ import annotations

from events import topics
from events.envelope import Envelope
from fastapi import FastAPI
from servicekit.app import Runtime, build_broker, create_service_app, tenant_outbox_relay
from servicekit.counting import RequestCounter
from servicekit.health import database_check, kafka_check
from servicekit.logs import configure_logging
from tenantdb import TenantDB
from tenantdb.subscriber import mount_directory_invalidation

from orders import api, consumers
from orders.settings import OrdersSettings, get_settings
from orders.usecases import OrdersService

VERSION = "0.1.0"


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.service_name, settings.log_level)

    tdb = TenantDB(settings)
    broker = build_broker(settings.kafka_bootstrap_servers, service=settings.service_name)
    # Published by the outbox relay, not through the broker: declared so the AsyncAPI document shows it.
    broker.publisher(
        topics.ORDERS,
        title="orders.orders.v1",
        description="order.placed (data: events.models.OrderPlaced), order.status_changed "
        "(data: events.models.OrderStatusChanged); key: the tenant id",
        schema=Envelope,
    )
    relay = tenant_outbox_relay(tdb, settings)
    counter = RequestCounter(
        broker, service=settings.service_name, window_seconds=settings.request_count_window_seconds
    )
    service = OrdersService(tdb)

    mount_directory_invalidation(broker, tdb.directory)
    consumers.register(broker, service, products_group_id=settings.products_group_id)

    runtime = Runtime(broker=broker, relay=relay, counter=counter, on_shutdown=[tdb.close])
    app = create_service_app(
        title=settings.service_name,
        version=VERSION,
        runtime=runtime,
        routers=[api.router],
        checks={"database": database_check(tdb.shared_engine), "kafka": kafka_check(broker)},
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.settings = settings
    app.state.tdb = tdb
    app.state.broker = broker
    app.state.relay = relay
    app.state.counter = counter
    app.state.orders = service
    return app
