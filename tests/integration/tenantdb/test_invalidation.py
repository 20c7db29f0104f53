"""`tenant.placement_changed` on Kafka invalidates a process's directory cache within a second."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from events import topics
from events.envelope import Envelope
from events.models import PlacementChanged
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from tenantdb import TenantDB
from tenantdb.subscriber import mount_directory_invalidation

from tests.integration.tenantdb.conftest import MakeTenant


def _event(tenant: uuid.UUID, event_type: str = "tenant.placement_changed") -> Envelope:
    return Envelope(
        event_type=event_type,
        tenant_id=tenant,
        producer="tests",
        data=PlacementChanged(
            tenant_id=tenant, tenant_type="dedicated", database_name=f"tenant_{tenant.hex}", placement_epoch=2
        ).model_dump(mode="json"),
    )


async def _cached(tdb: TenantDB, tenant: uuid.UUID) -> bool:
    return tenant in tdb.directory._entries


async def test_placement_changed_invalidates_within_a_second(
    tdb: TenantDB, make_tenant: MakeTenant, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Configured like the services' brokers: acknowledging after the handler is their default, and
    # a group-less subscriber must not try to commit an offset it has no group for.
    broker = KafkaBroker(kafka_bootstrap, ack_policy=AckPolicy.ACK)
    # FastStream's logger does not propagate to the root logger pytest captures.
    faststream_log = logging.getLogger("faststream.access.kafka")
    faststream_log.addHandler(caplog.handler)
    mount_directory_invalidation(broker, tdb.directory)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await broker.start()
    await producer.start()
    try:
        # The subscriber reads from the latest offset once it has its partitions: probe until it does.
        probe = await make_tenant("shared")
        deadline = time.monotonic() + 60
        while True:
            await tdb.directory.get(probe)
            event = _event(probe)
            await producer.send_and_wait(topics.TENANTS, event.to_json(), key=event.key())
            await asyncio.sleep(0.2)
            if not await _cached(tdb, probe):
                break
            assert time.monotonic() < deadline, "the directory subscriber never received an event"

        tenant = await make_tenant("shared")
        await tdb.directory.get(tenant)
        assert await _cached(tdb, tenant)
        event = _event(tenant)
        await producer.send_and_wait(topics.TENANTS, event.to_json(), key=event.key())
        sent = time.monotonic()
        while await _cached(tdb, tenant):
            assert time.monotonic() - sent < 1.0, "not invalidated within a second"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not failures, [r.getMessage() for r in failures]
    finally:
        faststream_log.removeHandler(caplog.handler)
        await producer.stop()
        await broker.stop()


async def test_unrelated_events_keep_the_cache(tdb: TenantDB, make_tenant: MakeTenant) -> None:
    from tenantdb.subscriber import handle_tenant_event

    tenant = await make_tenant("shared")
    await tdb.directory.get(tenant)
    assert not handle_tenant_event(tdb.directory, _event(tenant, "tenant.created").model_dump(mode="json"))
    assert await _cached(tdb, tenant)
    assert not handle_tenant_event(tdb.directory, {"event_type": "tenant.placement_changed"})
    assert handle_tenant_event(tdb.directory, _event(tenant).model_dump(mode="json"))
    assert not await _cached(tdb, tenant)
    assert tdb.directory._min_epoch[tenant] == 2  # the announced epoch, read through PlacementChanged
