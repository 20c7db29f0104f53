"""The app factory pieces: a broker configured the same everywhere, and one FastAPI app whose
lifespan starts and stops the Kafka broker, the outbox relay and the request counter together."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from events.dead_letter import DeadLetter
from events.relay import OutboxRelay
from fastapi import APIRouter, FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from servicekit.counting import RequestCounter
from servicekit.health import Check, health_router
from servicekit.http import RequestContextMiddleware
from servicekit.problems import install_problem_handlers
from servicekit.relay import tenant_outbox_relay

Hook = Callable[[], Awaitable[None]]


def build_broker(bootstrap_servers: str, *, service: str) -> KafkaBroker:
    """Idempotent acks=all producer; offsets committed after the handler (and its transaction)
    finished; failures retried with backoff, then dead-lettered (events.dead_letter)."""
    return KafkaBroker(
        bootstrap_servers,
        client_id=service,
        acks="all",
        enable_idempotence=True,
        ack_policy=AckPolicy.ACK,
        middlewares=[DeadLetter.configure(attempts=3, backoff=0.2)],
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
        await runtime.broker.start()
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
            await runtime.broker.stop()
            for hook in runtime.on_shutdown:
                await hook()

    app = FastAPI(title=title, version=version, lifespan=lifespan)
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, counter=runtime.counter, max_body_bytes=max_body_bytes)
    app.include_router(health_router(checks, runtime.broker, title=title, version=version))
    for router in routers:
        app.include_router(router)
    return app


# Kept here for the services' imports; the wiring lives in servicekit.relay.
__all__ = ["Runtime", "build_broker", "create_service_app", "tenant_outbox_relay"]
