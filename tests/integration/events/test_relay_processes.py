"""Relay processes (`python -m servicekit.relay`, separate OS processes) against real PostgreSQL and
Kafka: several sharing one backlog, a dedicated database closed meanwhile, and many dedicated
databases behind a small engine LRU."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from events import outbox
from events.envelope import Envelope
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from tenantschema.urls import asyncpg_url, libpq_url, with_database

from tests.integration.events.conftest import RELAY_TEST_TOPIC
from tests.integration.tenantdb.conftest import create_tenant, move_to_dedicated, retire_tenants
from tests.support.kafka import Seen, watch

pytestmark = pytest.mark.slow


@contextmanager
def relay_processes(
    stack_env: Mapping[str, str], count: int, log_dir: Path, **settings: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, **stack_env, **{key.upper(): value for key, value in settings.items()}}
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i in range(count):
            log = open(log_dir / f"relay-{i}.log", "ab")  # noqa: SIM115  (closed below)
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "servicekit.relay"], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for log in logs:
            log.close()


async def _write(url: str, tenants: list[uuid.UUID], per_tenant: int, *, per_transaction: int = 25) -> None:
    """Each tenant's events `i = 0..per_tenant-1`, committed in that order, tenants interleaved."""
    engine = create_async_engine(asyncpg_url(url), poolclass=NullPool)
    try:
        for start in range(0, per_tenant, per_transaction):
            for tenant in tenants:
                events = [
                    Envelope(event_type="product.updated", tenant_id=tenant, producer="tests", data={"i": i})
                    for i in range(start, min(per_tenant, start + per_transaction))
                ]
                async with engine.begin() as connection:
                    await outbox.record(connection, RELAY_TEST_TOPIC, *events)
    finally:
        await engine.dispose()


def _per_tenant(seen: Seen, tenants: set[str]) -> dict[str, list[int]]:
    """Each tenant's events in Kafka order (one partition per tenant), first occurrences only."""
    order: dict[str, list[int]] = {t: [] for t in tenants}
    ids: set[str] = set()
    for message in seen.messages:
        if message.get("tenant_id") in tenants and message["event_id"] not in ids:
            ids.add(message["event_id"])
            order[message["tenant_id"]].append(message["data"]["i"])
    return order


async def _until(what: str, probe: Any, timeout: float) -> float:
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


@asynccontextmanager
async def dedicated_tenants(stack_env: dict[str, str], count: int) -> AsyncIterator[dict[uuid.UUID, str]]:
    made: dict[uuid.UUID, str] = {}
    slots = asyncio.Semaphore(1)  # provisioning runs Alembic, whose migration context is process-global

    async def one() -> None:
        async with slots:
            tenant = await create_tenant(stack_env["PLATFORM_DATABASE_URL"])
            made[tenant] = await move_to_dedicated(stack_env, tenant)

    try:
        await asyncio.gather(*(one() for _ in range(count)))
        yield made
    finally:
        await retire_tenants(stack_env, list(made))


async def _set_connections(admin_url: str, database: str, *, allowed: bool) -> None:
    admin = await asyncpg.connect(libpq_url(admin_url))
    try:
        await admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {'true' if allowed else 'false'}")
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
            )
    finally:
        await admin.close()


async def test_three_relays_share_a_backlog_in_order_while_a_dedicated_database_is_closed(
    stack_env: dict[str, str], tmp_path: Path, relay_topic: str
) -> None:
    shared_tenants = [uuid.uuid4() for _ in range(45)]
    per_tenant = 200  # 50 tenants: 10,000 events
    owner = stack_env["OWNER_DATABASE_URL"]
    async with dedicated_tenants(stack_env, 5) as dedicated:
        closed_tenant, closed_db = next(iter(dedicated.items()))
        all_tenants = {str(t) for t in [*shared_tenants, *dedicated]}
        async with watch(stack_env["KAFKA_BOOTSTRAP_SERVERS"], RELAY_TEST_TOPIC) as seen:
            await _write(libpq_url(with_database(owner, "shared")), shared_tenants, per_tenant)
            for tenant, database in dedicated.items():
                await _write(libpq_url(with_database(owner, database)), [tenant], per_tenant)
            await _set_connections(stack_env["ADMIN_DATABASE_URL"], closed_db, allowed=False)
            try:
                with relay_processes(
                    stack_env,
                    3,
                    tmp_path,
                    outbox_leftover_interval_seconds="1",
                    outbox_sweep_interval_seconds="0.5",
                    log_level="DEBUG",
                ):
                    others = all_tenants - {str(closed_tenant)}

                    def delivered(tenants: set[str]) -> int:
                        return sum(len(v) for k, v in _per_tenant(seen, tenants).items())

                    took = await _until(
                        "the other 9,800 events", lambda: delivered(others) == per_tenant * len(others), 90
                    )
                    assert delivered({str(closed_tenant)}) == 0  # still closed
                    await _set_connections(stack_env["ADMIN_DATABASE_URL"], closed_db, allowed=True)
                    back = await _until(
                        "the closed database's events",
                        lambda: delivered({str(closed_tenant)}) == per_tenant,
                        60,
                    )
            finally:
                await _set_connections(stack_env["ADMIN_DATABASE_URL"], closed_db, allowed=True)
    order = _per_tenant(seen, all_tenants)
    assert all(events == list(range(per_tenant)) for events in order.values()), "a tenant out of order"
    sent = sum(1 for m in seen.messages if m.get("tenant_id") in all_tenants)
    # Three relays, one backlog: each event about once (a lease taken over resends), never three times.
    assert sent < 1.05 * per_tenant * len(all_tenants), sent
    print(
        f"\n9,800 events through 3 relays in {took:.1f} s (process start-up included); "
        f"the reopened database's in {back:.1f} s; {sent} sends"
    )


async def _relay_connections(admin_url: str) -> tuple[int, int]:
    admin = await asyncpg.connect(libpq_url(admin_url))
    try:
        row = await admin.fetchrow(
            "SELECT count(*) FILTER (WHERE datname LIKE 'tenant\\_%') AS dedicated, count(*) AS total "
            "FROM pg_stat_activity WHERE application_name = 'relay:relay'"
        )
        assert row is not None
        return int(row["dedicated"]), int(row["total"])
    finally:
        await admin.close()


async def test_fifty_dedicated_databases_behind_four_engines(
    stack_env: dict[str, str], tmp_path: Path, relay_topic: str
) -> None:
    per_tenant = 3
    owner = stack_env["OWNER_DATABASE_URL"]
    async with dedicated_tenants(stack_env, 50) as dedicated:
        tenants = {str(t) for t in dedicated}
        async with watch(stack_env["KAFKA_BOOTSTRAP_SERVERS"], RELAY_TEST_TOPIC) as seen:
            for tenant, database in dedicated.items():
                await _write(libpq_url(with_database(owner, database)), [tenant], per_tenant)
            with relay_processes(
                stack_env, 1, tmp_path, max_dedicated_engines="4", outbox_leftover_interval_seconds="5"
            ):
                samples: list[tuple[int, int]] = []
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    samples.append(await _relay_connections(stack_env["ADMIN_DATABASE_URL"]))
                    await asyncio.sleep(0.5)
    order = _per_tenant(seen, tenants)
    assert all(events == list(range(per_tenant)) for events in order.values()), order
    assert max(d for d, _ in samples) <= 4, samples  # one connection per engine, four engines
    assert max(t for _, t in samples) <= 4 + 2 + 2, samples  # + shared and platform (1 + 1 spare each)
    print(
        f"\nrelay connections over 30 s: max dedicated {max(d for d, _ in samples)}, "
        f"max total {max(t for _, t in samples)}"
    )
