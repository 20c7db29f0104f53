"""Per-tenant request counts, kept in memory and published as `api.requests_counted` windows.

The request path only increments a dict entry: no Kafka call, no lock. A background task publishes
one event per tenant per window; the last window is flushed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from datetime import UTC, datetime

import structlog
from events import topics
from events.envelope import Envelope
from events.models import RequestsCounted
from faststream.kafka import KafkaBroker

log = structlog.get_logger("servicekit.counting")


class RequestCounter:
    def __init__(self, broker: KafkaBroker, *, service: str, window_seconds: float = 1.0) -> None:
        self._broker = broker
        self._service = service
        self._window = window_seconds
        self._counts: Counter[uuid.UUID] = Counter()
        self._window_start = datetime.now(UTC)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def add(self, tenant_id: uuid.UUID) -> None:
        self._counts[tenant_id] += 1

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="request-counter")

    async def stop(self) -> None:
        """Let the loop finish its current window (never cancelled mid-publish: a cancelled send
        might have reached Kafka and would be counted twice), then flush what is left."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._window)
            if self._stopping.is_set():
                return
            try:
                await self.flush()
            except Exception as error:
                log.warning("request counts not published; kept for the next window", error=repr(error))

    async def flush(self) -> None:
        counts, self._counts = self._counts, Counter()
        start, end = self._window_start, datetime.now(UTC)
        self._window_start = end
        try:
            for tenant_id, count in list(counts.items()):
                event = Envelope(
                    event_type="api.requests_counted",
                    tenant_id=tenant_id,
                    producer=self._service,
                    data=RequestsCounted(
                        service=self._service, count=count, window_start=start, window_end=end
                    ).model_dump(mode="json"),
                )
                await self._broker.publish(event.to_json(), topic=topics.REQUESTS, key=event.key())
                del counts[tenant_id]
        finally:
            # Whatever was not published goes back into the next window.
            self._counts.update(counts)
            if counts:
                self._window_start = start
