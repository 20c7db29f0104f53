"""The broker's life in a service: connect in the background, so a service starts and serves HTTP
while Kafka is away (its events wait in the outbox; the relay has its own producer and retries).

`KafkaConnection.start()` gives a reachable Kafka its first attempt before returning (the
subscribers then run when the app starts serving, as they always did), but never waits long for an
unreachable one: it goes on trying with exponential backoff, and the subscribers join their groups
and start consuming when Kafka comes. Once connected it samples consumer lag (events.lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import structlog
from aiokafka.client import AIOKafkaClient
from events.lag import sample_lag
from faststream.kafka import KafkaBroker
from prometheus_client import Gauge

log = structlog.get_logger("servicekit.kafka")

CONNECTED = Gauge("kafka_broker_connected", "1 once this process's broker and subscribers have started")


class KafkaConnection:
    def __init__(
        self,
        broker: KafkaBroker,
        bootstrap_servers: str | list[str] | None = None,
        *,
        first_attempt_seconds: float = 5.0,
        start_timeout: float = 60.0,
        max_backoff: float = 10.0,
        lag_interval: float = 15.0,
    ) -> None:
        self._broker = broker
        # The broker keeps the servers it was built with only among its connection arguments.
        self._bootstrap = bootstrap_servers or broker._connection_kwargs["bootstrap_servers"]
        self._first_attempt_seconds = first_attempt_seconds
        self._start_timeout = start_timeout
        self._max_backoff = max_backoff
        self._lag_interval = lag_interval
        self._task: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()
        self.connected = False
        self.last_error: str | None = None

    async def start(self) -> None:
        self._attempted = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="kafka-connection")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), self._first_attempt_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Also after a failed start: stop what a partial start left (subscribers, admin client).
        with contextlib.suppress(Exception):
            await self._broker.stop()
        self.connected = False
        CONNECTED.set(0)

    async def _run(self) -> None:
        delay = 0.5
        while not self.connected:
            try:
                await asyncio.wait_for(self._probe(), 15.0)
                await asyncio.wait_for(self._broker.start(), self._start_timeout)
            except Exception as error:
                self.last_error = f"{type(error).__name__}: {error}"[:300]
                with contextlib.suppress(Exception):
                    await self._broker.stop()
                wait = delay * random.uniform(0.8, 1.2)
                log.warning(
                    "Kafka unreachable; serving without it, retrying",
                    retry_in_seconds=round(wait, 2),
                    error=self.last_error,
                )
                self._attempted.set()
                await asyncio.sleep(wait)
                delay = min(delay * 2, self._max_backoff)
            else:
                self.connected = True
                self.last_error = None
                CONNECTED.set(1)
                self._attempted.set()
                log.info("Kafka connected; subscribers started")
        while True:
            await asyncio.sleep(self._lag_interval)
            await sample_lag(self._broker.subscribers)

    async def _probe(self) -> None:
        """Bootstrap a throwaway client first: FastStream's start leaves a half-started producer behind
        when Kafka is down, and this client we can always close."""
        client = AIOKafkaClient(bootstrap_servers=self._bootstrap, request_timeout_ms=10_000)
        try:
            await client.bootstrap()
        finally:
            await client.close()
