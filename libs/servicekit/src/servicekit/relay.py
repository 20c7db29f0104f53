"""The outbox relay of a service, wired from its settings (the protocol: libs/events/README.md).

The relay connects as its own role (RELAY_PLATFORM_DATABASE_URL, RELAY_SHARED_DATABASE_URL; on a
dedicated database the dedicated URL template with the relay's user and password in place of the
tenant role's), with `application_name` `<service>:relay`, through engines of its own: one connection
for the shared (or platform) database, one for the leftover round on the platform database, and a
dedicated engine LRU of `MAX_DEDICATED_ENGINES` engines of one connection each. It needs no
DEDICATED_PASSWORD_SECRET.

`python -m servicekit.relay` runs a relay alone (shared and dedicated sources, no HTTP): for tests
and for a deployment that would rather relay in processes of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import structlog
from events.relay import OutboxRelay, Source, relay_id, sweep_due
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from tenantdb import TenantDB
from tenantdb.engines import DedicatedEngines, create_engine
from tenantdb.placement import Placement

from servicekit.platform import PLATFORM_SOURCE
from servicekit.settings import ServiceSettings

log = structlog.get_logger("servicekit.relay")

SHARED_SOURCE = "shared"


def relay_engine(url: str | URL, *, service: str) -> AsyncEngine:
    # A drain holds one connection from claim to settle; the second is for a metric or a prune racing it.
    return create_engine(
        url, pool_size=1, max_overflow=1, recycle=1800, pgbouncer=False, application_name=f"{service}:relay"
    )


def _relay_url(settings: ServiceSettings, key: str, service_url: str) -> str:
    url: str | None = getattr(settings, key)
    if url is None:
        log.error(
            "relay credentials not configured: the relay connects as the service's role, which may not "
            "claim outbox rows",
            setting=key.upper(),
        )
        return service_url
    return url


def dedicated_relay_url(settings: ServiceSettings, relay_url: str, database: str) -> URL:
    """The dedicated database's URL (template or the shared server) as the relay's user."""
    relay = make_url(relay_url)
    template = settings.dedicated_database_url_template
    if template is None:
        base = make_url(settings.shared_database_url).set(database=database)
    else:
        base = make_url(template.format(database=database, role=database, password="unused"))
    return base.set(username=relay.username, password=relay.password)


def _relay_options(settings: ServiceSettings) -> dict[str, Any]:
    return {
        "sweep_interval": settings.outbox_sweep_interval_seconds,
        "idle_poll": settings.outbox_idle_poll_seconds,
        "leftover_interval": settings.outbox_leftover_interval_seconds,
    }


def build_tenant_relay(settings: ServiceSettings, *, max_dedicated_engines: int) -> OutboxRelay:
    """Shared database polled, dedicated ones drained on notify and by the leftover round."""
    service = settings.service_name
    shared_url = _relay_url(settings, "relay_shared_database_url", settings.shared_database_url)
    platform_url = _relay_url(settings, "relay_platform_database_url", settings.platform_database_url)
    shared = relay_engine(shared_url, service=service)
    platform = relay_engine(platform_url, service=service)
    engines = DedicatedEngines(
        max_engines=max_dedicated_engines,
        pool_size=1,
        max_overflow=0,
        recycle=1800,
        pgbouncer=False,
        application_name=f"{service}:relay",
    )

    def dedicated(database: str) -> Source:
        engine = engines.get(database, lambda: dedicated_relay_url(settings, shared_url, database))
        return Source(database, "dedicated", engine)

    async def leftovers(n: int, min_interval: float) -> list[str]:
        return await sweep_due(platform, n, min_interval)

    async def close() -> None:
        await engines.dispose_all()
        await shared.dispose()
        await platform.dispose()

    return OutboxRelay(
        settings.kafka_bootstrap_servers,
        [Source(SHARED_SOURCE, "shared", shared)],
        relay=relay_id(service),
        dedicated=dedicated,
        leftovers=leftovers,
        # Never more drains at once than engines in the LRU: an engine under a drain is never evicted.
        concurrency=max(1, min(4, max_dedicated_engines)),
        closers=[close],
        **_relay_options(settings),
    )


def tenant_outbox_relay(tdb: TenantDB, settings: ServiceSettings) -> OutboxRelay:
    """The relay of a tenant service; every committed unit of work wakes it for its own database
    (services need not remember to)."""
    relay = build_tenant_relay(settings, max_dedicated_engines=tdb.settings.max_dedicated_engines)
    tdb.on_commit(lambda placement: relay.notify(_source_name(placement)))
    return relay


def _source_name(placement: Placement) -> str:
    return SHARED_SOURCE if placement.is_shared else str(placement.database_name)


def platform_outbox_relay(settings: ServiceSettings) -> OutboxRelay:
    """tenancy's relay: the platform database's outbox only."""
    url = _relay_url(settings, "relay_platform_database_url", settings.platform_database_url)
    engine = relay_engine(url, service=settings.service_name)
    return OutboxRelay(
        settings.kafka_bootstrap_servers,
        [Source(PLATFORM_SOURCE, "platform", engine)],
        relay=relay_id(settings.service_name),
        closers=[engine.dispose],
        **_relay_options(settings),
    )


async def _main() -> None:
    from tenantdb.settings import TenantDBSettings

    from servicekit.logs import configure_logging

    # Both from the environment (pydantic-settings), as a service's would be.
    settings = ServiceSettings(service_name="relay")
    configure_logging(settings.service_name, settings.log_level)
    engines = TenantDBSettings().max_dedicated_engines
    relay = build_tenant_relay(settings, max_dedicated_engines=engines)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await relay.start()
    log.info("relay running", relay=relay.relay)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await relay.stop()


if __name__ == "__main__":
    asyncio.run(_main())
