"""Tenant moves, shared -> dedicated, by the real runner (an in-process migrator app), while a
neighbour tenant on the shared database serves steady reads and writes through tenantdb.

- `migrator.move_10k`, `migrator.move_100k` (s, ratio = move / baseline, target <= 1.5): a tenant of
  10,000 / 100,000 products with proportional categories (1 %), customers (10 %) and orders (20 %),
  moved; the time is from the capture being installed (the copy's start) to the end of the cutover
  (`progress.captured_at` -> `progress.flipped_at`); provisioning (CREATE DATABASE + Alembic) is
  printed apart. Baseline, same run: the same rows streamed table by table with
  `COPY (SELECT ... WHERE tenant_id = ...) TO STDOUT (FORMAT binary)` into `COPY ... FROM STDIN` on a
  freshly provisioned database, while the neighbour serves its load, as it does during the move (on
  a machine whose cores the neighbour, PostgreSQL and the copy share, a baseline taken in quiet
  measured the neighbour's share of the CPU as the move's overhead). The baseline taken in quiet
  is printed beside it.
- `migrator.freeze_10k`, `migrator.freeze_100k` (ms): how long the cutover held the tenant's writes
  (`progress.freeze_ms`; target < 500, not growing with size).
- `migrator.neighbour_p99` (ratio of the neighbour's p99 during the moves to its p99 before them,
  target <= 1.2; value: the p99 during, ms). The neighbour's p99 during the baseline copies is
  printed beside it: what a plain COPY of the same rows costs the neighbour.
- `migrator.rows_per_second` (rows/s of the largest move, copy through cutover).

`MIGRATOR_BENCH_SIZES` (default `10000,100000`) picks the sizes (small ones while developing).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from migrator.moves import table_columns
from tenantdb import TenantDB, TenantDBSettings
from tenantdb.provisioning import drop_dedicated, provision_dedicated
from tenantschema.tables import TENANT_TABLES
from tenantschema.urls import libpq_url, with_database

from bench import Measure

BENCHMARKS = (
    "migrator.move_10k",
    "migrator.move_100k",
    "migrator.freeze_10k",
    "migrator.freeze_100k",
    "migrator.neighbour_p99",
    "migrator.rows_per_second",
)
NAMES = {10_000: "10k", 100_000: "100k"}


def _say(message: str) -> None:
    print(f"bench: migrator: {message}", file=sys.stderr, flush=True)


def _label(size: int) -> str:
    return NAMES.get(size, f"{size // 1000}k" if size >= 1000 else str(size))


async def _create_tenant(env: Mapping[str, str]) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    connection = await asyncpg.connect(env["TENANCY_PLATFORM_DATABASE_URL"])
    try:
        await connection.execute(
            "INSERT INTO tenants (id, name, subdomain) VALUES ($1, $2, $3)",
            tenant_id,
            f"Bench {tenant_id.hex[:8]}",
            f"bench-{tenant_id.hex}",
        )
    finally:
        await connection.close()
    return tenant_id


async def _retire(env: Mapping[str, str], tenants: list[uuid.UUID]) -> None:
    connection = await asyncpg.connect(env["TENANCY_PLATFORM_DATABASE_URL"])
    try:
        await connection.execute("UPDATE tenants SET status = 'deleted' WHERE id = ANY($1::uuid[])", tenants)
    finally:
        await connection.close()
    for tenant_id in tenants:
        await drop_dedicated(env["ADMIN_DATABASE_URL"], tenant_id)


async def _seed(env: Mapping[str, str], tenant_id: uuid.UUID, products: int) -> int:
    """The tenant's rows on the shared database, set-based (as the owner in the tenant's context)."""
    shared_owner = libpq_url(with_database(env["OWNER_DATABASE_URL"], "shared"))
    connection = await asyncpg.connect(shared_owner)
    try:
        async with connection.transaction():
            await connection.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))
            await connection.execute(
                "INSERT INTO product_categories (name, slug) "
                "SELECT 'Category ' || i, 'cat-' || i FROM generate_series(1, $1) i",
                max(1, products // 100),
            )
            await connection.execute(
                "INSERT INTO products (name, description, sku, price, status, inventory, attributes) "
                "SELECT 'Product ' || i, repeat('description ', 8), 'SKU-' || i, (i % 1000) + 0.99, "
                "'active', jsonb_build_object('stock', i % 50), jsonb_build_object('size', i % 7, 'w', 1.5) "
                "FROM generate_series(1, $1) i",
                products,
            )
            await connection.execute(
                "INSERT INTO customers (email, first_name) "
                "SELECT 'c' || i || '@example.com', 'Name ' || i FROM generate_series(1, $1) i",
                max(1, products // 10),
            )
            await connection.execute(
                "INSERT INTO orders (order_number, customer_email, total_amount, subtotal_amount, items) "
                "SELECT 'ORD-' || i, 'c' || (i % $2 + 1) || '@example.com', 10.50, 10.50, "
                "'[{\"qty\": 1}]'::jsonb FROM generate_series(1, $1) i",
                max(1, products // 5),
                max(1, products // 10),
            )
            await connection.execute(
                "INSERT INTO sequences (name, last_value) VALUES ('order_number', $1)", max(1, products // 5)
            )
        rows = 0
        async with connection.transaction():  # RLS is forced: counted in the tenant's context
            await connection.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))
            for table in TENANT_TABLES:
                rows += await connection.fetchval(
                    f"SELECT count(*) FROM {table} WHERE tenant_id = $1",  # noqa: S608 (declared names)
                    tenant_id,
                )
    finally:
        await connection.close()
    return rows


async def _baseline_copy(env: Mapping[str, str], tenant_id: uuid.UUID) -> float:
    """COPY ... TO STDOUT into COPY ... FROM STDIN on a fresh dedicated database, table by table."""
    scratch = uuid.uuid4()
    secret = env.get("DEDICATED_PASSWORD_SECRET") or "bench"
    # Where the migrator provisions dedicated databases: this server, or another one.
    admin_url = env.get("DEDICATED_ADMIN_DATABASE_URL") or env["ADMIN_DATABASE_URL"]
    owner_url = env.get("DEDICATED_OWNER_DATABASE_URL") or env["OWNER_DATABASE_URL"]
    database = await provision_dedicated(admin_url, owner_url, scratch, secret)
    source = await asyncpg.connect(libpq_url(with_database(env["OWNER_DATABASE_URL"], "shared")))
    target = await asyncpg.connect(libpq_url(with_database(admin_url, database)))
    try:
        started = time.perf_counter()
        for table in TENANT_TABLES:
            columns = ", ".join(f'"{c}"' for c in table_columns(table))
            queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)

            async def sink(data: bytes, queue: asyncio.Queue[bytes | None] = queue) -> None:
                await queue.put(data)

            async def produce(table: str = table, columns: str = columns, queue: Any = queue) -> None:
                try:
                    async with source.transaction():
                        await source.execute(
                            "SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id)
                        )
                        await source.copy_from_query(
                            f"SELECT {columns} FROM {table} WHERE tenant_id = $1",  # noqa: S608
                            tenant_id,
                            output=sink,
                            format="binary",
                        )
                finally:
                    await queue.put(None)

            async def chunks(queue: asyncio.Queue[bytes | None] = queue) -> Any:
                while (part := await queue.get()) is not None:
                    yield part

            producer = asyncio.create_task(produce())
            await target.copy_to_table(table, source=chunks(), columns=table_columns(table), format="binary")
            await producer
        return time.perf_counter() - started
    finally:
        await source.close()
        await target.close()
        await drop_dedicated(admin_url, scratch)


class Neighbour:
    """A second tenant's steady reads and writes through tenantdb (catalog's role); latencies kept."""

    def __init__(self, env: Mapping[str, str], tenant_id: uuid.UUID) -> None:
        self.tdb = TenantDB(
            TenantDBSettings(
                platform_database_url=env["CATALOG_PLATFORM_DATABASE_URL"],
                shared_database_url=env["CATALOG_SHARED_DATABASE_URL"],
                application_name="bench:neighbour",
            )
        )
        self.tenant_id = tenant_id
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _work(self, i: int) -> None:
        from sqlalchemy import text

        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                readonly = i % 4 != 0
                async with self.tdb.unit_of_work(self.tenant_id, readonly=readonly) as uow:
                    if readonly:
                        await uow.connection.execute(text("SELECT id, price FROM products LIMIT 1"))
                    else:
                        await uow.connection.execute(
                            text("UPDATE products SET price = price WHERE sku = 'SKU-1'")
                        )
                        await uow.commit()
            except Exception:
                self.errors += 1
            self.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)

    def start(self) -> None:
        self._stop.clear()
        self.latencies = []
        self._tasks = [asyncio.create_task(self._work(i)) for i in range(4)]

    async def stop(self) -> list[float]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.latencies

    async def close(self) -> None:
        await self.tdb.close()


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values, default=0.0)


async def _move(client: httpx.AsyncClient, tenant_id: uuid.UUID) -> dict[str, Any]:
    made = await client.post("/v1/migrations", json={"tenant_id": str(tenant_id), "reason": "bench"})
    made.raise_for_status()
    migration_id = made.json()["id"]
    deadline = time.monotonic() + 1800
    while True:
        body: dict[str, Any] = (await client.get(f"/v1/migrations/{migration_id}")).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            if body["status"] != "completed":
                raise RuntimeError(f"the move ended {body['status']}: {body['error_message']}")
            return body
        if time.monotonic() > deadline:
            raise RuntimeError("the move did not end within 30 minutes")
        await asyncio.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _migrator_process(env: Mapping[str, str], log_dir: Path) -> Iterator[str]:
    """`python -m migrator` as its own process (its CPU is not the neighbour's event loop), as its
    own role, the source deleted right after the flip."""
    port = _free_port()
    child_env = {
        **os.environ,
        **env,
        "PLATFORM_DATABASE_URL": env["MIGRATOR_PLATFORM_DATABASE_URL"],
        "SHARED_DATABASE_URL": env["MIGRATOR_SHARED_DATABASE_URL"],
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": os.environ.get("MIGRATOR_BENCH_LOG_LEVEL", "WARNING"),
        "MIGRATOR_CLEANUP_DELAY_SECONDS": "0",
        "MIGRATOR_POLL_INTERVAL_SECONDS": "0.1",
        "PLACEMENT_AUTO_ENABLED": "false",  # only the benchmark's own moves
    }
    with (log_dir / "migrator.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "migrator"], env=child_env, stdout=log, stderr=log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def _ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the migrator process never became ready")
            await asyncio.sleep(0.2)


async def run(selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    if os.environ.get("MIGRATOR_BENCH_OTHER_SERVER") != "1":
        return await _run(selected, env)
    from devstack.config import load_config
    from devstack.dedicated_cluster import DedicatedCluster

    state_dir = Path(tempfile.mkdtemp(prefix="bench-dedicated-"))  # as the cross-server tests do
    cluster = DedicatedCluster(load_config(), port=_free_port(), state_dir=state_dir)
    _say("dedicated databases on another local server")
    try:
        return await _run(selected, {**env, **await asyncio.to_thread(cluster.up)})
    finally:
        await asyncio.to_thread(cluster.down)
        shutil.rmtree(state_dir, ignore_errors=True)


async def _run(selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    from datetime import datetime

    sizes = [int(s) for s in os.environ.get("MIGRATOR_BENCH_SIZES", "10000,100000").split(",") if s]
    log_dir = Path(env.get("DEVSTACK_DIR", ".devstack")) / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    made: list[uuid.UUID] = []
    measures: list[Measure] = []
    neighbour_id = await _create_tenant(env)
    made.append(neighbour_id)
    await _seed(env, neighbour_id, 100)
    neighbour = Neighbour(env, neighbour_id)
    try:
        with _migrator_process(env, log_dir) as url:
            await _ready(url)
            neighbour.start()
            await asyncio.sleep(5)
            quiet = await neighbour.stop()
            during: list[float] = []
            during_copy: list[float] = []
            largest_rate = 0.0
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                for size in sizes:
                    tenant_id = await _create_tenant(env)
                    made.append(tenant_id)
                    rows = await _seed(env, tenant_id, size)
                    quiet_baseline = await _baseline_copy(env, tenant_id)
                    neighbour.start()
                    baseline = await _baseline_copy(env, tenant_id)
                    during_copy += await neighbour.stop()
                    neighbour.start()
                    done = await _move(client, tenant_id)
                    during += await neighbour.stop()
                    progress = done["progress"]
                    captured = datetime.fromisoformat(progress["captured_at"]).timestamp()
                    move = float(progress["flipped_at"]) - captured
                    provision = captured - datetime.fromisoformat(done["started_at"]).timestamp()
                    largest_rate = rows / move if move > 0 else 0.0
                    label = _label(size)
                    _say(
                        f"{size} products ({rows} rows): move {move:.2f} s, provisioning {provision:.2f} s "
                        f"apart, baseline COPY {baseline:.2f} s beside the neighbour ({quiet_baseline:.2f} s "
                        f"in quiet), freeze {progress['freeze_ms']} ms, "
                        f"{largest_rate:.0f} rows/s"
                    )
                    measures.append(
                        Measure(f"migrator.move_{label}", round(move, 3), "s", round(baseline, 3))
                    )
                    measures.append(Measure(f"migrator.freeze_{label}", float(progress["freeze_ms"]), "ms"))
        p99_quiet, p99_during = _p99(quiet), _p99(during)
        _say(
            f"neighbour p99 {p99_quiet * 1000:.1f} ms before, {p99_during * 1000:.1f} ms during the moves "
            f"({len(during)} operations, {neighbour.errors} errors, "
            f"the slowest {max(during, default=0) * 1000:.1f} ms), "
            f"{_p99(during_copy) * 1000:.1f} ms during the baseline copies"
        )
        measures.append(
            Measure(
                "migrator.neighbour_p99",
                round(p99_during * 1000, 2),
                "ms",
                round(p99_quiet * 1000, 2),
                round(p99_during / p99_quiet, 3) if p99_quiet else None,
            )
        )
        measures.append(Measure("migrator.rows_per_second", round(largest_rate), "rows/s"))
    finally:
        await neighbour.close()
        await _retire(env, made)
    # Sizes other than 10k/100k (MIGRATOR_BENCH_SIZES while developing) are printed under their own names.
    return [
        m
        for m in measures
        if m.bench in selected or m.bench.startswith(("migrator.move_", "migrator.freeze_"))
    ]
