"""Exact under real faults: the consumer process SIGKILLed in the middle of a large backlog, several
times, and restarted; two consumer processes in one group, one of them killed mid-batch (the group
rebalances onto the survivor). The backlog holds numbered and unnumbered request counts and copies of
some events; the counts afterwards are exactly what the distinct events say."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.integration.usage.conftest import (
    counts_of,
    end_offsets,
    new_tenants,
    order_placed,
    publish,
    requests_counted,
    start_group_at,
    wait_consumed,
)
from tests.support.databases import role_url
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.slow


def backlog(tenants: list[uuid.UUID], n: int, seed: int) -> list[dict[str, Any]]:
    """Zipf-skewed events: 90 % request counts, two thirds of them numbered by three counters (as
    servicekit's are: deduplicated by their counter's mark) and the rest not (by event id); 10 %
    orders. Then 5 % of them again, each later than its original (at least once: a producer's retry,
    a relay that lost its lease), which must count nothing."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    counters = [uuid.uuid4() for _ in range(3)]
    sequences: dict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)
    events = []
    for i in range(n):
        tenant_id = tenants[min(int(rng.paretovariate(1.2)) - 1, len(tenants) - 1)]
        at = now - timedelta(seconds=rng.randint(0, 7200))
        if i % 10 == 0:
            # order.placed rather than product.created: only usage reads orders.orders.v1, while
            # every orders consumer group in later tests would have to work through products.
            events.append(order_placed(tenant_id, now))
        elif i % 3:
            counter = counters[i % 3]
            sequences[(counter, tenant_id)] += 1
            sequence = sequences[(counter, tenant_id)]
            events.append(
                requests_counted(tenant_id, rng.randint(1, 9), at, counter=counter, sequence=sequence)
            )
        else:
            events.append(requests_counted(tenant_id, rng.randint(1, 9), at))
    placed = [(float(i), event) for i, event in enumerate(events)]
    placed += [(rng.uniform(i + 0.5, n), events[i]) for i in rng.sample(range(n), n // 20)]
    return [event for _, event in sorted(placed, key=lambda item: item[0])]


def totals(events: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    counted: set[str] = set()
    for event in events:
        if event["event_id"] in counted:
            continue  # a copy
        counted.add(event["event_id"])
        if event["event_type"] == "api.requests_counted":
            found[event["tenant_id"]][0] += event["data"]["count"]
        else:
            found[event["tenant_id"]][1] += 1
    return {t: (r, p) for t, (r, p) in found.items()}


async def applied_records(stack_env: dict[str, str], group_id: str) -> int:
    connection = await asyncpg.connect(role_url(stack_env, "usage"))
    try:
        value = await connection.fetchval(
            "SELECT COALESCE(sum(next_offset), 0) FROM usage_offsets WHERE group_id = $1 AND next_offset > 0",
            group_id,
        )
    finally:
        await connection.close()
    return int(value)


async def wait_applied(
    stack_env: dict[str, str], group_id: str, at_least: int, process: ServiceProcess
) -> None:
    deadline = time.monotonic() + 120
    while await applied_records(stack_env, group_id) < at_least:
        if process.process.poll() is not None:
            raise AssertionError(f"usage exited with {process.process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group_id} never applied {at_least} records")
        await asyncio.sleep(0.02)


def start(stack_env: dict[str, str], group_id: str, log: Path) -> ServiceProcess:
    env = {
        **stack_env,
        "USAGE_GROUP_ID": group_id,
        "USAGE_BATCH_MAX_RECORDS": "400",
        "RECONCILE_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }
    return ServiceProcess("usage", env, log)


async def check_exact(
    stack_env: dict[str, str], events: list[dict[str, Any]], tenants: list[uuid.UUID]
) -> None:
    expected = totals(events)
    for tenant_id in tenants:
        counts = await counts_of(stack_env, tenant_id)
        requests = sum(c[0] for c in counts.daily.values())
        orders = sum(c[2] for c in counts.daily.values())
        assert (requests, orders) == expected.get(str(tenant_id), (0, 0)), tenant_id
        assert sum(counts.monthly.values()) == requests


async def test_sigkill_mid_backlog_several_times_counts_exactly(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    tenants = await new_tenants(stack_env, 40)
    events = backlog(tenants, 40_000, seed=11)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    group_id = f"usage-kill-{uuid.uuid4().hex[:10]}"
    mark = await end_offsets(bootstrap)
    await start_group_at(stack_env, group_id, mark)
    before = sum(mark.values())
    await publish(bootstrap, events)
    for fraction in (0.2, 0.45, 0.7):
        process = start(stack_env, group_id, tmp_path / "usage.log")
        await wait_applied(stack_env, group_id, before + int(len(events) * fraction), process)
        process.kill()  # SIGKILL: a batch in flight is rolled back by the server
    process = start(stack_env, group_id, tmp_path / "usage.log")
    try:
        await wait_consumed(stack_env, group_id, timeout=180)
    finally:
        process.stop()
    await check_exact(stack_env, events, tenants)


async def test_two_consumers_in_one_group_one_killed_counts_exactly(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    tenants = await new_tenants(stack_env, 30)
    events = backlog(tenants, 30_000, seed=12)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    group_id = f"usage-pair-{uuid.uuid4().hex[:10]}"
    mark = await end_offsets(bootstrap)
    await start_group_at(stack_env, group_id, mark)
    before = sum(mark.values())
    first = start(stack_env, group_id, tmp_path / "first.log")
    second = start(stack_env, group_id, tmp_path / "second.log")
    try:
        await first.wait_ready()
        await second.wait_ready()
        await publish(bootstrap, events)
        await wait_applied(stack_env, group_id, before + len(events) // 3, first)
        first.kill()  # mid-batch: the group rebalances its partitions onto the second
        await wait_consumed(stack_env, group_id, timeout=180)
    finally:
        second.stop()
        if first.process.poll() is None:
            first.stop()
    await check_exact(stack_env, events, tenants)
