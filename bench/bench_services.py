"""services.get_product and services.post_order: requests/s through the real services vs a bare
FastAPI + asyncpg app running the same SQL (bench/bare_app.py), in the same run, one uvicorn worker
each, driven by wrk (`make bench` installs it; a Python client saturates before either server does,
so there is no fallback).

Value: our requests/s; baseline: the bare app's; ratio = bare ÷ ours (lower is better; targets:
get_product ≤ 1/0.85, post_order ≤ 1/0.9). `services.*_p99`: our p99 latency vs the bare app's
(ratio = ours ÷ bare, target ≤ 2). Runs alternate bare/ours so drift on the machine hits both; the
median of the runs is reported.

Both apps write the same outbox rows (the tenant lock of events.outbox.record included), and one outbox
relay runs as its own process (`python -m servicekit.relay`, a supported deployment) for the whole of
`post_order`, publishing both apps' events: both pay for the events on this machine, and what is
compared is the request path. (With the relay inside the orders process, the default, its cost is the
events.* benchmarks' subject, not this one's.)

A ratio means something only if the server under test, not the load generator, set the pace. Each
run records the CPU time wrk used (its event loop spins when it cannot keep up) and the server's; a
measure where wrk was busy ≥ SATURATED of its thread's time is reported without a ratio, and why.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from tenantschema.urls import libpq_url, with_database

from bench import Measure
from bench.bare_app import BARE_TOPIC
from bench.processes import relays

BENCHMARKS = (
    "services.get_product",
    "services.get_product_p99",
    "services.post_order",
    "services.post_order_p99",
)

PRODUCTS = 1000
RUNS = 5  # alternating bare/ours; the median damps the machine's drift (the bare app alone moves ±10 %)
DURATION_S = 6
CONNECTIONS = 32
WRK_THREADS = 1  # a 2-core machine: one core for the server under test, the other for wrk and PostgreSQL
SATURATED = 0.9  # wrk busy this share of its thread's time: it, not the server, set the pace


@dataclass(frozen=True)
class Run:
    rps: float
    p99_ms: float
    wrk_busy: float  # CPU seconds wrk used per second and thread
    server_busy: float  # CPU seconds the server process used per second (1.0: one core)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, module: str, env: Mapping[str, str], workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / f"{module}.log", "ab")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port), "LOG_LEVEL": "WARNING"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.url} exited")
            try:
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.url} never became ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(server: Server, script: Path) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _cpu_seconds(server.process.pid)
    started = time.monotonic()
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "--latency"]
    out = subprocess.run(
        [*command, "-s", str(script), server.url], capture_output=True, text=True, check=True
    ).stdout
    elapsed = time.monotonic() - started
    server_busy = (_cpu_seconds(server.process.pid) - server_before) / elapsed
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(
            f"{server.url}: {non2xx.group(1)} failed responses\n{out}\nserver logs in {script.parent}"
        )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return Run(
        rps=rps,
        p99_ms=float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        wrk_busy=wrk_cpu / (elapsed * WRK_THREADS),
        server_busy=server_busy,
    )


def _scripts(workdir: Path, tenant: uuid.UUID, ids: list[str], body: str) -> dict[str, Path]:
    get = workdir / "get.lua"
    get.write_text(
        f'wrk.headers["X-Tenant-ID"] = "{tenant}"\n'
        f"local ids = {{{', '.join(repr(i) for i in ids)}}}\n"
        "local n = 0\n"
        "request = function()\n  n = n + 1\n"
        '  return wrk.format("GET", "/v1/products/" .. ids[(n % #ids) + 1])\nend\n'
    )
    post = workdir / "post.lua"
    post.write_text(
        'wrk.method = "POST"\n'
        'wrk.path = "/v1/orders"\n'
        f'wrk.headers["X-Tenant-ID"] = "{tenant}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{body}]]\n"
    )
    return {"GET": get, "POST": post}


async def _seed(env: Mapping[str, str], tenant: uuid.UUID) -> list[str]:
    platform = await asyncpg.connect(env["TENANCY_PLATFORM_DATABASE_URL"])  # tenancy writes tenants
    try:
        await platform.execute(
            "INSERT INTO tenants (id, name, subdomain) VALUES ($1, 'bench', $2)",
            tenant,
            f"bench-{tenant.hex}",
        )
    finally:
        await platform.close()
    shared = await asyncpg.connect(libpq_url(with_database(env["ADMIN_DATABASE_URL"], "shared")))
    try:
        rows = await shared.fetch(
            """INSERT INTO products (tenant_id, name, description, sku, price, status)
               SELECT $1, 'Product ' || g, 'A product', 'B-' || g, (g % 90) + 9.99, 'active'
               FROM generate_series(1, $2) g RETURNING id, name, sku, price, updated_at""",
            tenant,
            PRODUCTS,
        )
        await shared.executemany(
            "INSERT INTO order_products (tenant_id, id, name, sku, price, status, version_at) "
            "VALUES ($1, $2, $3, $4, $5, 'active', $6)",
            [(tenant, r["id"], r["name"], r["sku"], r["price"], r["updated_at"]) for r in rows],
        )
        await shared.execute("ANALYZE products; ANALYZE order_products")
    finally:
        await shared.close()
    return [str(r["id"]) for r in rows]


async def _cleanup(env: Mapping[str, str], tenant: uuid.UUID) -> None:
    shared = await asyncpg.connect(libpq_url(with_database(env["ADMIN_DATABASE_URL"], "shared")))
    try:
        for table in ("orders", "customers", "order_products", "products", "sequences", "outbox"):
            await shared.execute(f"DELETE FROM {table} WHERE tenant_id = $1", tenant)  # noqa: S608
    finally:
        await shared.close()
    platform = await asyncpg.connect(env["TENANCY_PLATFORM_DATABASE_URL"])  # tenancy writes tenants
    try:
        await platform.execute("UPDATE tenants SET status = 'deleted' WHERE id = $1", tenant)
    finally:
        await platform.close()


def _summary(runs: list[Run]) -> Run:
    return Run(
        rps=statistics.median(r.rps for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        wrk_busy=max(r.wrk_busy for r in runs),
        server_busy=statistics.median(r.server_busy for r in runs),
    )


def _measures(name: str, ours: Run, bare: Run) -> list[Measure]:
    print(
        f"  {name:22} ours {ours.rps:8.0f} req/s p99 {ours.p99_ms:6.1f} ms cpu {ours.server_busy:4.2f} | "
        f"bare {bare.rps:8.0f} req/s p99 {bare.p99_ms:6.1f} ms cpu {bare.server_busy:4.2f} | "
        f"ours/bare {ours.rps / bare.rps:.2f} | wrk busy ≤ {max(ours.wrk_busy, bare.wrk_busy):.2f}",
        file=sys.stderr,
    )
    saturated = max(ours.wrk_busy, bare.wrk_busy) >= SATURATED
    if saturated:
        print(
            f"  {name}: the load generator was the bottleneck (wrk busy "
            f"{max(ours.wrk_busy, bare.wrk_busy):.0%} of its thread): no ratio reported",
            file=sys.stderr,
        )
    throughput_ratio = None if saturated else round(bare.rps / ours.rps, 3)
    latency_ratio = None if saturated else round(ours.p99_ms / bare.p99_ms, 3)
    return [
        Measure(name, round(ours.rps, 1), "req/s", round(bare.rps, 1), ratio=throughput_ratio),
        Measure(f"{name}_p99", round(ours.p99_ms, 2), "ms", round(bare.p99_ms, 2), ratio=latency_ratio),
    ]


def run(selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (make bench installs it: apt-get install wrk)")
    from devstack.kafka import ensure_topics

    asyncio.run(ensure_topics(env["KAFKA_BOOTSTRAP_SERVERS"], [BARE_TOPIC]))  # the relay publishes there
    tenant = uuid.uuid4()
    ids = asyncio.run(_seed(env, tenant))
    body = json.dumps(
        {"customer_email": "bench@example.com", "items": [{"product_id": ids[0], "quantity": 2}]}
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-services-"))
    scripts = _scripts(workdir, tenant, ids, body)
    service_env = {
        **env,
        "DEDICATED_PASSWORD_SECRET": env.get("DEDICATED_PASSWORD_SECRET", secrets.token_hex(8)),
    }
    plan = [
        ("services.get_product", "catalog", "GET"),
        ("services.post_order", "orders", "POST"),
    ]
    measures: list[Measure] = []
    try:
        for name, module, method in plan:
            if not any(s.startswith(name) for s in selected):
                continue
            # The service logs in as its own role, as it does when deployed (tenantschema.roles).
            own_role = {
                "PLATFORM_DATABASE_URL": env[f"{module.upper()}_PLATFORM_DATABASE_URL"],
                "SHARED_DATABASE_URL": env[f"{module.upper()}_SHARED_DATABASE_URL"],
            }
            # The orders service's events go out through the relay process started below.
            relay_off = {"OUTBOX_RELAY_ENABLED": "false"} if method == "POST" else {}
            relay_count = 1 if method == "POST" else 0
            ours = Server(module, {**service_env, **own_role, **relay_off}, workdir)
            bare = Server("bench.bare_app", service_env, workdir)
            try:
                with relays(env, workdir, relay_count):
                    ours.wait_ready("/readyz")
                    bare.wait_ready("/docs")
                    for server in (bare, ours):  # one request each first: a broken setup fails loudly
                        headers = {"X-Tenant-ID": str(tenant), "Content-Type": "application/json"}
                        if method == "GET":
                            probe = httpx.get(f"{server.url}/v1/products/{ids[0]}", headers=headers)
                        else:
                            probe = httpx.post(f"{server.url}/v1/orders", content=body, headers=headers)
                        if probe.status_code >= 300:
                            answer = f"{probe.status_code}: {probe.text[:500]}"
                            raise RuntimeError(f"{server.url} answered {answer}")
                    results: dict[str, list[Run]] = {"ours": [], "bare": []}
                    for _ in range(RUNS):
                        for label, server in (("bare", bare), ("ours", ours)):
                            results[label].append(_wrk(server, scripts[method]))
            finally:
                ours.stop()
                bare.stop()
            measures += [
                m
                for m in _measures(name, _summary(results["ours"]), _summary(results["bare"]))
                if m.bench in selected
            ]
    finally:
        asyncio.run(_cleanup(env, tenant))
    shutil.rmtree(workdir, ignore_errors=True)  # kept when a run failed: the servers' logs are there
    return measures
