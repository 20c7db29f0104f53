"""services.get_product and services.post_order: requests/s through the real services vs a bare
FastAPI + asyncpg app running the same SQL (bench/bare_app.py), in the same run, one uvicorn worker
each, driven by the same load generator (wrk when installed, else a Python client).

Value: our requests/s; baseline: the bare app's; ratio = bare ÷ ours (lower is better, target ≤ 1/0.6).
Runs alternate bare/ours so drift on the machine hits both; the median of the runs is reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncpg
import httpx
from devstack.services import database_env
from tenantschema.urls import libpq_url, with_database

from bench import Measure

BENCHMARKS = ("services.get_product", "services.post_order")

PRODUCTS = 1000
RUNS = 5  # alternating bare/ours; the median damps the machine's drift (the bare app alone moves ±10 %)
DURATION_S = 6
CONNECTIONS = 32


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
            env={
                **os.environ,
                **env,
                **database_env(module, env),  # as the service's own role, as devstack starts it
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "LOG_LEVEL": "WARNING",
            },
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


def _wrk(url: str, script: Path) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(
            f"{url}: {non2xx.group(1)} failed responses\n{out}\nserver logs in {script.parent}"
        )
    return rps, float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")


async def _python_load(
    url: str, method: str, tenant: uuid.UUID, ids: list[str], body: str
) -> tuple[float, float]:
    latencies: list[float] = []
    deadline = time.monotonic() + DURATION_S
    headers = {"X-Tenant-ID": str(tenant), "Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONNECTIONS)) as client:

        async def worker(n: int) -> None:
            i = n
            while time.monotonic() < deadline:
                started = time.perf_counter()
                if method == "GET":
                    response = await client.get(f"{url}/v1/products/{ids[i % len(ids)]}", headers=headers)
                else:
                    response = await client.post(f"{url}/v1/orders", content=body, headers=headers)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
                i += CONNECTIONS

        await asyncio.gather(*(worker(n) for n in range(CONNECTIONS)))
    latencies.sort()
    return len(latencies) / DURATION_S, latencies[int(len(latencies) * 0.99)] * 1000


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
    platform = await asyncpg.connect(env["TENANCY_PLATFORM_DATABASE_URL"])
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
    platform = await asyncpg.connect(env["TENANCY_PLATFORM_DATABASE_URL"])
    try:
        await platform.execute("UPDATE tenants SET status = 'deleted' WHERE id = $1", tenant)
    finally:
        await platform.close()


def run(selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    tenant = uuid.uuid4()
    ids = asyncio.run(_seed(env, tenant))
    body = json.dumps(
        {"customer_email": "bench@example.com", "items": [{"product_id": ids[0], "quantity": 2}]}
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-services-"))
    scripts = _scripts(workdir, tenant, ids, body)
    use_wrk = shutil.which("wrk") is not None
    print(
        f"  load generator: {'wrk' if use_wrk else 'python (install wrk for sharper numbers)'}",
        file=sys.stderr,
    )
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
            if name not in selected:
                continue
            # The service logs in as its own role, as it does when deployed (tenantschema.roles).
            own_role = {
                "PLATFORM_DATABASE_URL": env[f"{module.upper()}_PLATFORM_DATABASE_URL"],
                "SHARED_DATABASE_URL": env[f"{module.upper()}_SHARED_DATABASE_URL"],
            }
            ours = Server(module, {**service_env, **own_role}, workdir)
            bare = Server("bench.bare_app", service_env, workdir)
            try:
                ours.wait_ready("/readyz")
                bare.wait_ready("/docs")
                for server in (bare, ours):  # one request each first: a broken setup fails loudly
                    headers = {"X-Tenant-ID": str(tenant), "Content-Type": "application/json"}
                    if method == "GET":
                        probe = httpx.get(f"{server.url}/v1/products/{ids[0]}", headers=headers)
                    else:
                        probe = httpx.post(f"{server.url}/v1/orders", content=body, headers=headers)
                    if probe.status_code >= 300:
                        raise RuntimeError(f"{server.url} answered {probe.status_code}: {probe.text[:500]}")
                results: dict[str, list[tuple[float, float]]] = {"ours": [], "bare": []}
                for _ in range(RUNS):
                    for label, server in (("bare", bare), ("ours", ours)):
                        if use_wrk:
                            results[label].append(_wrk(server.url, scripts[method]))
                        else:
                            results[label].append(
                                asyncio.run(_python_load(server.url, method, tenant, ids, body))
                            )
            finally:
                ours.stop()
                bare.stop()
            ours_rps = statistics.median(r for r, _ in results["ours"])
            bare_rps = statistics.median(r for r, _ in results["bare"])
            ours_p99 = statistics.median(p for _, p in results["ours"])
            bare_p99 = statistics.median(p for _, p in results["bare"])
            print(
                f"  {name:22} ours {ours_rps:8.0f} req/s p99 {ours_p99:6.1f} ms | "
                f"bare {bare_rps:8.0f} req/s p99 {bare_p99:6.1f} ms | ours/bare {ours_rps / bare_rps:.2f}",
                file=sys.stderr,
            )
            measures.append(
                Measure(
                    name, round(ours_rps, 1), "req/s", round(bare_rps, 1), ratio=round(bare_rps / ours_rps, 3)
                )
            )
    finally:
        asyncio.run(_cleanup(env, tenant))
    shutil.rmtree(workdir, ignore_errors=True)  # kept when a run failed: the servers' logs are there
    return measures
