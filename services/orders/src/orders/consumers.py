"""Kafka subscribers: validate the envelope, call a use case. Nothing else.

Every subscription of the service is listed in `register`. A handler that raises is handed to the
broker's middleware (events.dead_letter): transient failures hold the partition and are retried for as
long as they last, permanent ones go to `<topic>.dlq`. Offsets are committed only after the handler
returned (or the dead letter is written), so a crash redelivers and the inbox drops the duplicate.
"""

from __future__ import annotations

import structlog
from events import topics
from events.dead_letter import count_outcome
from events.envelope import Envelope
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from servicekit.app import TenantService
from tenantdb.subscriber import mount_directory_invalidation

from orders.settings import OrdersSettings
from orders.usecases import OrdersService

log = structlog.get_logger("orders.consumers")


def register(broker: KafkaBroker, service: TenantService[OrdersSettings, OrdersService]) -> None:
    mount_directory_invalidation(broker, service.tdb.directory)
    # Its own connections, named "orders:consumers" in pg_stat_activity, off the request pool.
    usecases = OrdersService(service.tdb.for_worker("consumers"))

    @broker.subscriber(
        topics.PRODUCTS,
        group_id=service.settings.products_group_id,
        # A new group reads the topic from the start: the read model wants every product.
        auto_offset_reset="earliest",
        title="orders.products",
        description="catalog products into the orders' read model (order_products)",
    )
    async def product_changed(message: KafkaMessage) -> None:
        # Parsed from the raw bytes: anything that is not an envelope fails, and is dead-lettered.
        envelope = Envelope.model_validate_json(message.body)
        outcome = await usecases.apply_product_event(envelope)
        count_outcome(topics.PRODUCTS, outcome)
        log.debug(
            "product event",
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            tenant_id=str(envelope.tenant_id),
            outcome=outcome,
        )
