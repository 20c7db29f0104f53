"""The composition root of tenancy: settings in, a FastAPI app (HTTP + Kafka producer) out."""

from __future__ import annotations

from events import topics
from fastapi import FastAPI
from servicekit.app import Runtime, build_broker, create_service_app
from servicekit.health import database_check, kafka_check
from servicekit.logs import configure_logging
from servicekit.relay import platform_outbox_relay
from sqlalchemy.ext.asyncio import create_async_engine
from tenantschema.urls import asyncpg_url

from tenancy import api
from tenancy.settings import TenancySettings, get_settings
from tenancy.usecases import TenancyService

VERSION = "0.1.0"


def create_app(settings: TenancySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.service_name, settings.log_level)
    engine = create_async_engine(asyncpg_url(settings.platform_database_url), pool_size=10, max_overflow=10)
    broker = build_broker(settings.kafka_bootstrap_servers, service=settings.service_name)
    broker.publisher(
        topics.TENANTS,
        title="tenancy.tenants.v1",
        description="tenant.created, tenant.updated, tenant.plan_changed, tenant.deleted (via the outbox)",
    )

    relay = platform_outbox_relay(settings)
    runtime = Runtime(
        broker=broker, relay=relay if settings.outbox_relay_enabled else None, on_shutdown=[engine.dispose]
    )
    app = create_service_app(
        title="tenancy",
        version=VERSION,
        runtime=runtime,
        routers=[api.router],
        checks={"database": database_check(engine), "kafka": kafka_check(broker)},
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.service = TenancyService(engine, relay, base_domain=settings.base_domain)
    app.state.relay = relay
    app.state.engine = engine
    return app
