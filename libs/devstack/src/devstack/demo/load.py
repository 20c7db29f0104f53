"""Steady traffic on every demo tenant: product reads and order writes, paced, counted.

Each tenant gets one reader and one writer task. A task sends at its rate and, when an answer comes
late, carries on from now instead of bursting to catch up (so a slow cutover shows as latency, not as
a flood afterwards); the achieved rate is reported against the target, which says when the load
generator itself fell behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

from devstack.demo.client import PlatformClient


@dataclass
class TrafficTarget:
    """What one tenant's traffic reads and orders."""

    tenant: str
    tenant_id: str
    product_ids: list[str]
    customer_email: str


@dataclass
class LoadGenerator:
    client: PlatformClient
    reads_per_second: float
    orders_per_second: float
    targets: list[TrafficTarget] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float | None = None
    stopped_at: float | None = None

    @property
    def running(self) -> bool:
        return bool(self._tasks) and self.stopped_at is None

    def start(self) -> None:
        self.started_at = time.monotonic()
        for target in self.targets:
            self._tasks.append(asyncio.create_task(self._reads(target), name=f"demo-reads-{target.tenant}"))
            self._tasks.append(asyncio.create_task(self._orders(target), name=f"demo-orders-{target.tenant}"))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.stopped_at = time.monotonic()

    def target_rate(self) -> float:
        return len(self.targets) * (self.reads_per_second + self.orders_per_second)

    def achieved_rate(self) -> float | None:
        """Traffic requests per second over the time the generator ran."""
        if self.started_at is None:
            return None
        end = self.stopped_at or time.monotonic()
        sent = sum(1 for s in self.client.tally.samples if s.kind in ("read", "order"))
        return sent / max(end - self.started_at, 1e-6)

    async def _reads(self, target: TrafficTarget) -> None:
        if self.reads_per_second <= 0:
            return
        products = itertools.cycle(target.product_ids)
        while not self._stop.is_set():
            started = time.monotonic()
            await self.client.read_product(target.tenant, target.tenant_id, next(products))
            await self._pause(started, self.reads_per_second)

    async def _orders(self, target: TrafficTarget) -> None:
        if self.orders_per_second <= 0:
            return
        products = itertools.cycle(target.product_ids)
        while not self._stop.is_set():
            started = time.monotonic()
            await self.client.place_order(
                target.tenant, target.tenant_id, target.customer_email, next(products)
            )
            await self._pause(started, self.orders_per_second)

    async def _pause(self, started: float, rate: float) -> None:
        left = 1.0 / rate - (time.monotonic() - started)
        if left > 0 and not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=left)
