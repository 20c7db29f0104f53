"""The composition root: builds tenantdb, the Kafka broker, the outbox relay, the request counter and
the FastAPI app, and hands them to each other. Tests build the same thing with their own settings."""

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

import catalog
from catalog import api
from catalog.settings import CatalogSettings, get_settings
from catalog.usecases import Catalog

VERSION = "0.1.0"


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.service_name, settings.log_level)

    tdb = TenantDB(settings.tenantdb_settings())
    broker = build_broker(settings.kafka_bootstrap_servers, service=settings.service_name)
    # Published by the outbox relay, not through the broker: declared so the AsyncAPI document shows it.
    broker.publisher(
        topics.PRODUCTS,
        title="catalog.products.v1",
        description="product.created, product.updated, product.deleted; key: the tenant id; "
        "data: events.models.ProductData",
        schema=Envelope,
    )
    mount_directory_invalidation(broker, tdb.directory)
    relay = tenant_outbox_relay(tdb, settings)
    counter = RequestCounter(
        broker, service=settings.service_name, window_seconds=settings.request_count_window_seconds
    )

    async def close_tdb() -> None:
        await tdb.close()

    runtime = Runtime(broker=broker, relay=relay, counter=counter, on_shutdown=[close_tdb])
    app = create_service_app(
        title=settings.service_name,
        version=VERSION,
        runtime=runtime,
        routers=[api.router],
        checks={"database": database_check(tdb.shared_engine), "kafka": kafka_check(broker)},
        max_body_bytes=settings.max_body_bytes,
    )
    app.description = catalog.__doc__ or ""
    app.state.settings = settings
    app.state.tdb = tdb
    app.state.relay = relay
    app.state.broker = broker
    app.state.catalog = Catalog(tdb)
    return app
