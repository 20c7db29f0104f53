"""Per-tenant request counts, kept in memory and published as `api.requests_counted` events.

The request path only increments a dict entry (no Kafka call, no lock), once the response is out and
only if the request's tenant was known (`mark_unknown_tenant`: an id that resolves to no tenant is
never counted, so random ids cannot grow this table). A background task publishes every
`window_seconds`.

Nothing is dropped while Kafka is away, and memory stays bounded by the number of tenants: per
tenant there is at most one *open* counter (windows not yet made into an event merge into it: one
count spanning [first window start, end]) and at most one *unconfirmed* event (made, sent, not yet
acknowledged). An unconfirmed event is resent as it is, same `event_id`, until Kafka acknowledges it;
new counts never go into it. So a publish that timed out but did land is only ever a duplicate of one
event id, which usage drops, and a request is counted once. Each event carries this counter's id
and a sequence number: since a tenant's next event is made only once the previous one is
acknowledged, usage deduplicates by a mark per (counter, tenant) rather than a row per event id.
Counts still unconfirmed at shutdown (Kafka away then) are lost, and logged with their total.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from events import topics
from events.envelope import Envelope
from events.models import RequestsCounted
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge

log = structlog.get_logger("servicekit.counting")

# Set in the ASGI scope by the handler of tenantdb.TenantNotFound: that request is not counted.
UNKNOWN_TENANT = "servicekit.unknown_tenant"

PENDING = Gauge(
    "request_counts_pending_requests", "Requests counted in memory and not yet acknowledged by Kafka"
)
PUBLISH_FAILURES = Counter(
    "request_counts_publish_failures_total", "api.requests_counted events whose publish failed (retried)"
)


def mark_unknown_tenant(scope: MutableMapping[str, Any]) -> None:
    scope[UNKNOWN_TENANT] = True


@dataclass(slots=True)
class _Open:
    count: int
    start: datetime


class RequestCounter:
    def __init__(
        self,
        broker: KafkaBroker,
        *,
        service: str,
        window_seconds: float = 1.0,
        publish_timeout: float = 10.0,
    ) -> None:
        self._broker = broker
        self._service = service
        self._window = window_seconds
        self._publish_timeout = publish_timeout
        self._counts: dict[uuid.UUID, int] = {}  # the current window: the request path's only state
        self._window_start = datetime.now(UTC)
        self._open: dict[uuid.UUID, _Open] = {}
        self._unconfirmed: dict[uuid.UUID, Envelope] = {}
        self._counter_id = uuid.uuid4()  # this process's counter (RequestsCounted.counter_id)
        self._sequence = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def add(self, tenant_id: uuid.UUID) -> None:
        counts = self._counts
        counts[tenant_id] = counts.get(tenant_id, 0) + 1

    @property
    def pending(self) -> int:
        """Requests counted and not yet acknowledged by Kafka."""
        unconfirmed = sum(int(e.data["count"]) for e in self._unconfirmed.values())
        return sum(self._counts.values()) + sum(o.count for o in self._open.values()) + unconfirmed

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="request-counter")

    async def stop(self) -> None:
        """Let the loop finish its current flush (a cancelled send might still land: harmless, its
        event id is kept, but there is no next flush to resend it), then flush what is left."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        await self.flush()
        if self._unconfirmed or self._open:
            log.error("request counts not published before shutdown", requests=self.pending)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._window)
            if self._stopping.is_set():
                return
            try:
                await self.flush()
            except Exception as error:  # never let the loop die: the counts stay in memory
                log.warning("request counts not published; kept", error=repr(error))

    async def flush(self) -> None:
        end = datetime.now(UTC)
        counts, self._counts = self._counts, {}
        start, self._window_start = self._window_start, end
        for tenant_id, count in counts.items():
            entry = self._open.get(tenant_id)
            if entry is None:
                self._open[tenant_id] = _Open(count, start)
            else:
                entry.count += count
        for tenant_id in [t for t in self._open if t not in self._unconfirmed]:
            entry = self._open.pop(tenant_id)
            self._sequence += 1
            self._unconfirmed[tenant_id] = Envelope(
                event_type="api.requests_counted",
                tenant_id=tenant_id,
                producer=self._service,
                data=RequestsCounted(
                    service=self._service,
                    count=entry.count,
                    window_start=entry.start,
                    window_end=end,
                    counter_id=self._counter_id,
                    sequence=self._sequence,
                ).model_dump(mode="json"),
            )
        sending = list(self._unconfirmed.items())
        if sending:
            results = await asyncio.gather(*(self._send(e) for _, e in sending), return_exceptions=True)
            failed: BaseException | None = None
            for (tenant_id, event), result in zip(sending, results, strict=True):
                if isinstance(result, BaseException):
                    failed = result
                    PUBLISH_FAILURES.inc()
                elif self._unconfirmed.get(tenant_id) is event:
                    del self._unconfirmed[tenant_id]
            if failed is not None:
                log.warning(
                    "request counts not published; kept for the next flush",
                    tenants=len(self._unconfirmed),
                    error=repr(failed),
                )
        PENDING.set(self.pending)

    async def _send(self, event: Envelope) -> None:
        publish = self._broker.publish(event.to_json(), topic=topics.REQUESTS, key=event.key())
        await asyncio.wait_for(publish, self._publish_timeout)
