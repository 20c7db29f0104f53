"""Every Kafka subscription of the migrator: the automatic placement's triggers.

- `usage.thresholds.v1`: usage's `tenant.threshold_crossed` (products, monthly requests, data size,
  plan enterprise, compliance, the plans' soft limits);
- `tenancy.tenants.v1`: tenancy's `tenant.plan_changed` to enterprise and `tenant.updated` with
  `compliance_isolation: true` (the same causes as usage's crossings: whichever arrives first decides,
  the second finds the move queued and starts nothing).

Each event is decided once (`placement_decisions.event_id` is unique, written in the decision's
transaction), so a redelivery or a replay decides nothing again. A handler that raises is handed to
the broker's middleware (events.dead_letter): transient failures hold the partition and are retried
for as long as they last, an unparseable message or a permanent failure goes to `<topic>.dlq`.
Offsets are committed only after the handler returned. With `PLACEMENT_AUTO_ENABLED=false` nothing
is subscribed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import structlog
from events import topics
from events.dead_letter import count_outcome
from events.envelope import Envelope
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from servicekit.app import PlatformService
from servicekit.platform import PLATFORM_SOURCE, PlatformDB

from migrator.placement_usecases import PlacementService
from migrator.settings import MigratorSettings

log = structlog.get_logger("migrator.consumers")

CONSUMED: Final = (topics.THRESHOLDS, topics.TENANTS)


def register(
    broker: KafkaBroker,
    service: PlatformService[MigratorSettings, Any],
    *,
    wake: Callable[[], None] = lambda: None,
) -> None:
    settings = service.settings
    if not settings.placement_auto_enabled:
        log.info("automatic placement off: no trigger is consumed")
        return
    # Its own connections, named "migrator:consumers" in pg_stat_activity, off the API's pool.
    db = PlatformDB(
        settings.platform_database_url, application_name=f"{settings.service_name}:consumers", pool_size=2
    )
    relay = service.relay
    if relay is not None:
        db.on_commit(lambda: relay.notify(PLATFORM_SOURCE))  # migration.started goes out at once
    placement = PlacementService(db, settings)
    placement.on_queued(wake)
    service.background.append(_ClosedAtStop(db))

    async def decide(topic: str, message: KafkaMessage) -> None:
        # Parsed from the raw bytes: anything that is not an envelope fails, and is dead-lettered.
        envelope = Envelope.model_validate_json(message.body)
        outcome = await placement.apply_trigger(envelope)
        count_outcome(topic, "applied" if outcome not in ("ignored", "duplicate") else outcome)
        log.debug(
            "trigger event",
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            tenant_id=str(envelope.tenant_id),
            outcome=outcome,
        )

    @broker.subscriber(
        topics.THRESHOLDS,
        group_id=f"{settings.placement_group_id}.thresholds",
        auto_offset_reset=settings.placement_offset_reset,
        title="migrator.placement.thresholds",
        description="usage's tenant.threshold_crossed: the decision matrix applied, moves queued",
    )
    async def threshold_crossed(message: KafkaMessage) -> None:
        await decide(topics.THRESHOLDS, message)

    @broker.subscriber(
        topics.TENANTS,
        group_id=f"{settings.placement_group_id}.tenants",
        auto_offset_reset=settings.placement_offset_reset,
        title="migrator.placement.tenants",
        description="tenancy's tenant.plan_changed (enterprise) and tenant.updated (compliance_isolation)",
    )
    async def tenant_changed(message: KafkaMessage) -> None:
        await decide(topics.TENANTS, message)


class _ClosedAtStop:
    """The consumers' database, closed when the service stops."""

    def __init__(self, db: PlatformDB) -> None:
        self._db = db

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._db.close()
