"""Exact when the servers go away: the usage process works through a large backlog on a stack of the
module's own (tests.support.processes.IsolatedStack, so stopping its servers disturbs no other test)
while its PostgreSQL is stopped and started again, then its Kafka. The process is never restarted;
afterwards the counts are exactly what the distinct events say (the backlog of test_faults: numbered
and unnumbered request counts, orders, copies of some events), and the Kafka outage did not make
its clients retry without pause."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.integration.usage.conftest import end_offsets, new_tenants, publish, start_group_at, wait_consumed
from tests.integration.usage.test_faults import applied_records, backlog, check_exact, start, wait_applied
from tests.support.processes import IsolatedStack

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 5.0


async def test_postgres_then_kafka_stopped_mid_backlog_counts_exactly(
    isolated: IsolatedStack, tmp_path: Path
) -> None:
    env = isolated.env  # stack.env of the isolated stack: its role URLs, its Kafka
    tenants = await new_tenants(env, 30)
    events = backlog(tenants, 60_000, seed=21)
    group_id = f"usage-servers-{uuid.uuid4().hex[:10]}"
    mark = await end_offsets(isolated.kafka)
    await start_group_at(env, group_id, mark)
    end = sum(mark.values()) + len(events)  # the group's summed offsets once the backlog is applied
    await publish(isolated.kafka, events)
    log = tmp_path / "usage.log"
    process = start(env, group_id, log)
    try:
        await wait_applied(env, group_id, end - len(events) * 9 // 10, process)  # at work on it
        await asyncio.to_thread(isolated.stop_postgres)
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage (what proves it was met: the log, below)
        await asyncio.to_thread(isolated.start_again)
        after_postgres = await applied_records(env, group_id)
        assert after_postgres < end, "the backlog was applied before PostgreSQL went away"

        # At work again (a few batches), then Kafka goes away under it. What it fetched before may
        # be applied during the outage; when it comes back the group rejoins and seeks to the
        # offsets stored with the counts.
        await wait_applied(env, group_id, min(end, after_postgres + len(events) // 50), process)
        await asyncio.to_thread(isolated.stop_kafka)
        when_kafka_stopped = await applied_records(env, group_id)
        assert when_kafka_stopped < end, "the backlog was applied before Kafka went away"
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(isolated.start_again)

        await wait_consumed(env, group_id, timeout=90)
        assert process.process.poll() is None, "usage exited (it is to wait the outages out)"
    finally:
        process.stop()
    # It was in the middle of a batch when PostgreSQL went away, and retried it rather than giving up.
    text = log.read_text()
    assert "batch not applied" in text
    # While no broker answered, its Kafka clients waited between metadata refreshes instead of
    # retrying in a loop without pause (events.kafka_backoff; without it: ~25,000 such lines here).
    refused = sum(
        line.count("Unable connect to node") + line.count("Unable to update metadata")
        for line in text.splitlines()
    )
    assert refused < 1000, f"{refused} connection errors logged in a {OUTAGE_SECONDS:.0f} s Kafka outage"
    await check_exact(env, events, tenants)
