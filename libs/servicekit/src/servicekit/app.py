"""The app factory pieces: a broker configured the same everywhere, and one FastAPI app whose
lifespan starts and stops the Kafka broker, the outbox relay and the request counter together."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from events.dead_letter import DeadLetter
from events.relay import OutboxRelay, Source
from fastapi import APIRouter, FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from sqlalchemy import text
from tenantdb import TenantDB
from tenantdb.placement import Placement

from servicekit.counting import RequestCounter
from servicekit.health import Check, health_router
from servicekit.http import RequestContextMiddleware
from servicekit.kafka import KafkaConnection
from servicekit.problems import install_problem_handlers

Hook = Callable[[], Awaitable[None]]


def build_broker(bootstrap_servers: str, *, service: str) -> KafkaBroker:
    """Idempotent acks=all producer; offsets committed only after the handler (and its transaction)
    finished or the message is in `<topic>.dlq`; transient failures hold the partition and are retried
    for as long as they last, permanent ones dead-lettered (events.dead_letter)."""
    return KafkaBroker(
        bootstrap_servers,
        client_id=service,
        acks="all",
        enable_idempotence=True,
        ack_policy=AckPolicy.ACK,
        middlewares=[DeadLetter.configure(attempts=5, backoff=0.2, max_backoff=5.0)],
    )


@dataclass
class Runtime:
    """What a service's lifespan runs besides HTTP."""

    broker: KafkaBroker
    relay: OutboxRelay | None = None
    counter: RequestCounter | None = None
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)


def create_service_app(
    *,
    title: str,
    version: str,
    runtime: Runtime,
    routers: Sequence[APIRouter],
    checks: Mapping[str, Check],
    max_body_bytes: int,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for hook in runtime.on_startup:
            await hook()
        # Kafka away must not keep the service from serving: the broker connects in the background.
        kafka = KafkaConnection(runtime.broker)
        await kafka.start()
        if runtime.relay is not None:
            await runtime.relay.start()
        if runtime.counter is not None:
            await runtime.counter.start()
        # Everything built so far lives as long as the process: move it out of the collector's sight,
        # so the garbage collections that request traffic triggers do not walk it again and again.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if runtime.counter is not None:
                await runtime.counter.stop()  # flushes the last window while the broker is up
            if runtime.relay is not None:
                await runtime.relay.stop()
            await kafka.stop()
            for hook in runtime.on_shutdown:
                await hook()

    app = FastAPI(title=title, version=version, lifespan=lifespan)
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, counter=runtime.counter, max_body_bytes=max_body_bytes)
    app.include_router(health_router(checks, runtime.broker, title=title, version=version))
    for router in routers:
        app.include_router(router)
    return app


_DEDICATED = text(
    "SELECT id, database_name, placement_epoch FROM tenants "
    "WHERE tenant_type = 'dedicated' AND database_name IS NOT NULL AND status <> 'deleted'"
)


SHARED_SOURCE = "shared"


def tenant_outbox_relay(tdb: TenantDB, bootstrap_servers: str, *, sweep_interval: float) -> OutboxRelay:
    """The relay of a tenant service: its sources are the shared and the dedicated databases, and every
    committed unit of work wakes it for its own database (services need not remember to)."""
    relay = OutboxRelay(bootstrap_servers, tenant_outbox_sources(tdb), sweep_interval=sweep_interval)
    tdb.on_commit(lambda placement: relay.notify(_source_name(placement)))
    return relay


def _source_name(placement: Placement) -> str:
    return SHARED_SOURCE if placement.is_shared else str(placement.database_name)


def tenant_outbox_sources(
    tdb: TenantDB, *, refresh_seconds: float = 5.0
) -> Callable[[], Awaitable[list[Source]]]:
    """The shared database and every dedicated one: where tenant services' outboxes live.

    Re-listed every `refresh_seconds`, and at once when the directory saw a placement change (a move,
    or a dedicated tenant it had not seen), so a moved tenant's first events do not wait."""
    cached: list[Source] = []
    fetched_at = 0.0
    generation = -1

    async def sources() -> list[Source]:
        nonlocal cached, fetched_at, generation
        stale = time.monotonic() - fetched_at > refresh_seconds or generation != tdb.directory.generation
        if stale:
            generation = tdb.directory.generation
            async with tdb.platform_engine.connect() as connection:
                rows = (await connection.execute(_DEDICATED)).all()
            dedicated = []
            for row in rows:
                placement = Placement(row.id, "dedicated", row.database_name, "active", row.placement_epoch)
                dedicated.append(Source(row.database_name, tdb.engine_for(placement)))
            cached = [Source(SHARED_SOURCE, tdb.shared_engine), *dedicated]
            fetched_at = time.monotonic()
        return cached

    return sources
