"""One catalog process, one tenant held at its cutover: the other tenants of the process do not notice.

Tenant A is held (tenantdb.fencing.Cutover.hold, the migrator's exclusive lock) while 30 writes for A
arrive at one in-process catalog app and tenant B reads all along in the same process. B sees no
error and a p99 under 50 ms; A's writes end in 201 (after the release) or 503 with Retry-After (their
wait ran out), never 500. An exhausted pool is a 503 with Retry-After too.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from catalog.app import create_app
from fastapi import FastAPI
from tenantdb import TenantDB
from tenantdb.fencing import Cutover
from tenantschema.urls import libpq_url, with_database

from tests.integration.catalog.conftest import TENANT_HEADER, catalog_settings, new_tenant
from tests.support.apps import serve

HELD_SECONDS = 2.0
WRITE_WAIT_SECONDS = 1.5

WRITES = 30


@pytest.fixture
async def small_catalog(
    stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    # tenantdb reads its tuning from the environment (as in production): a pool of 4, and a write
    # waits at most 1.5 s for a cutover.
    monkeypatch.setenv("SHARED_POOL_SIZE", "4")
    monkeypatch.setenv("WRITE_WAIT_SECONDS", str(WRITE_WAIT_SECONDS))
    monkeypatch.setenv("POOL_TIMEOUT_SECONDS", "0.5")
    app = create_app(catalog_settings(stack_env))
    async with serve(app) as client:
        yield app, client


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def test_a_tenant_held_at_cutover_does_not_slow_the_others(
    stack_env: dict[str, str],
    small_catalog: tuple[FastAPI, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, client = small_catalog
    made: list[uuid.UUID] = []
    held = await new_tenant(stack_env, "shared", made)
    other = await new_tenant(stack_env, "shared", made)
    created = await client.post(
        "/v1/products", json={"name": "Lamp", "price": "9.99"}, headers={TENANT_HEADER: str(other)}
    )
    assert created.status_code == 201, created.text
    product_url = f"/v1/products/{created.json()['id']}"
    for _ in range(20):  # warm: first requests pay for lazily built things (routes, statements)
        assert (await client.get(product_url, headers={TENANT_HEADER: str(other)})).status_code == 200

    read_statuses: list[int] = []
    stop_reading = asyncio.Event()

    async def read_other(latencies: list[float]) -> None:
        while not stop_reading.is_set():
            started = time.perf_counter()
            response = await client.get(product_url, headers={TENANT_HEADER: str(other)})
            latencies.append(time.perf_counter() - started)
            read_statuses.append(response.status_code)

    async def write_held(i: int) -> httpx.Response:
        await asyncio.sleep(i * HELD_SECONDS / WRITES)  # arriving all through the hold
        return await client.post(
            "/v1/products", json={"name": f"Held {i}", "price": "1.00"}, headers={TENANT_HEADER: str(held)}
        )

    shared_owner = libpq_url(with_database(stack_env["OWNER_DATABASE_URL"], "shared"))
    quiet: list[float] = []
    during: list[float] = []
    # The app shares this process with pytest: keep pytest's heap and per-request log capture out of
    # the app's latencies (a service process freezes what it built at start-up, servicekit.app).
    caplog.set_level(logging.WARNING)
    gc.collect()
    gc.freeze()
    try:
        # B alone first: what this machine gives right now, to tell its noise from our effect.
        readers = [asyncio.create_task(read_other(quiet)) for _ in range(2)]
        await asyncio.sleep(1.0)
        stop_reading.set()
        await asyncio.gather(*readers)
        stop_reading.clear()

        readers = [asyncio.create_task(read_other(during)) for _ in range(2)]
        async with Cutover.hold(shared_owner, held):
            writes = [asyncio.create_task(write_held(i)) for i in range(WRITES)]
            await asyncio.sleep(HELD_SECONDS)
        responses = await asyncio.wait_for(asyncio.gather(*writes), 10)
        await asyncio.sleep(0.2)
        stop_reading.set()
        await asyncio.gather(*readers)
    finally:
        gc.unfreeze()

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["Retry-After"]
            assert response.headers["content-type"].startswith("application/problem+json")
    # Early writes outwaited their 1.5 s, later ones landed once the hold ended.
    assert 201 in statuses
    assert 503 in statuses
    assert set(read_statuses) == {200}, f"tenant B saw {sorted(set(read_statuses))}"
    assert len(during) > 50
    p99, quiet_p99 = _p99(during), _p99(quiet)
    # 50 ms is the bound, for a quiet machine. On a loaded one (this is a 2-core machine
    # shared with other suites) B alone already shows a longer tail: then the bound is twice that.
    bound = max(0.050, 2 * quiet_p99)
    assert p99 < bound, (
        f"tenant B's p99 {p99 * 1000:.1f} ms during the hold (max {max(during) * 1000:.1f} ms), "
        f"{quiet_p99 * 1000:.1f} ms alone"
    )
    print(f"tenant B p99: {p99 * 1000:.1f} ms during the hold, {quiet_p99 * 1000:.1f} ms alone")


async def test_an_exhausted_pool_answers_503_with_retry_after(
    stack_env: dict[str, str], small_catalog: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    app, client = small_catalog
    tenant = await new_tenant(stack_env, "shared", [])
    tdb: TenantDB = app.state.tdb
    held = [tdb.unit_of_work(tenant, readonly=True) for _ in range(tdb.settings.shared_pool_size)]
    for uow in held:  # every connection of the request pool, checked out
        await uow.__aenter__()
    try:
        response = await client.get("/v1/products", headers={TENANT_HEADER: str(tenant)})
    finally:
        for uow in held:
            await uow.__aexit__(None, None, None)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 503
    after = await client.get("/v1/products", headers={TENANT_HEADER: str(tenant)})
    assert after.status_code == 200
