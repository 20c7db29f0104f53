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

from orders.usecases import OrdersService

log = structlog.get_logger("orders.consumers")


def register(broker: KafkaBroker, service: OrdersService, *, products_group_id: str) -> None:
    @broker.subscriber(
        topics.PRODUCTS,
        group_id=products_group_id,
        # A new group reads the topic from the start: the read model wants every product.
        auto_offset_reset="earliest",
        title="orders.products",
        description="catalog products into the orders' read model (order_products)",
    )
    async def product_changed(message: KafkaMessage) -> None:
        # Parsed from the raw bytes: anything that is not an envelope fails, and is dead-lettered.
        envelope = Envelope.model_validate_json(message.body)
        outcome = await service.apply_product_event(envelope)
        count_outcome(topics.PRODUCTS, outcome)
        log.debug(
            "product event",
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            tenant_id=str(envelope.tenant_id),
            outcome=outcome,
        )
