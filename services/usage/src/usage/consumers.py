"""Every Kafka subscription of usage, in one place.

usage reads four topics with one aggregating consumer of its own (usage.ingest: a plain aiokafka loop
whose offsets are stored in the database with the counts, not a FastStream subscriber; its module
docstring says why), in the consumer group `USAGE_GROUP_ID`:

| topic | event types counted | into |
|---|---|---|
| `usage.requests.v1` | api.requests_counted | daily requests_count, month total, monthly_requests |
| `catalog.products.v1` | product.created, product.deleted | daily products_count (created), product_count |
| `orders.orders.v1` | order.placed | daily orders_count |
| `tenancy.tenants.v1` | tenant.created, tenant.updated, tenant.plan_changed | plan, compliance thresholds |

Every other event type on these topics is consumed and ignored. The reconciler (usage.reconcile)
runs beside it.
"""

from __future__ import annotations

from typing import Final

from events import topics
from faststream.kafka import KafkaBroker
from servicekit.app import PlatformService
from servicekit.platform import PLATFORM_SOURCE, PlatformDB
from tenantdb import TenantDB

from usage.ingest import AggregatingConsumer
from usage.reconcile import Reconciler
from usage.settings import UsageSettings
from usage.usecases import UsageService

CONSUMED: Final = (topics.REQUESTS, topics.PRODUCTS, topics.ORDERS, topics.TENANTS)


def register(broker: KafkaBroker, service: PlatformService[UsageSettings, UsageService]) -> None:
    settings = service.settings
    # Background work on connections of its own, named as such (usage:consumers).
    db = PlatformDB(settings.platform_database_url, application_name=f"{settings.service_name}:consumers")
    relay = service.relay
    if relay is not None:
        db.on_commit(lambda: relay.notify(PLATFORM_SOURCE))  # a crossing's event goes out at once
    usecases = UsageService(db, triggers=service.usecases.triggers, clock=service.usecases.clock)
    consumer = AggregatingConsumer(
        usecases,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.usage_group_id,
        topics=CONSUMED,
        client_id=f"{settings.service_name}:consumers",
        max_records=settings.usage_batch_max_records,
        fetch_wait_ms=settings.usage_fetch_wait_ms,
    )
    service.background.append(_Closing(consumer, db))
    if settings.reconcile_enabled:
        tdb = TenantDB(settings.tenantdb_settings(application_name=f"{settings.service_name}:reconcile"))
        service.background.append(
            Reconciler(
                usecases,
                tdb,
                interval_seconds=settings.reconcile_interval_seconds,
                caught_up=lambda: consumer.caught_up(topics.PRODUCTS),
                dedup_retention_days=settings.dedup_retention_days,
            )
        )


class _Closing:
    """The consumer, and its database closed after it."""

    def __init__(self, consumer: AggregatingConsumer, db: PlatformDB) -> None:
        self.consumer = consumer
        self._db = db

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self._db.close()
