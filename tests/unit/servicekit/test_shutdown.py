"""A shutdown step that hangs, even one that swallows its cancellation, is left behind after its
time: the steps after it still run and the service process ends."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from servicekit.app import _bounded


async def test_a_hung_step_is_left_behind_and_the_next_runs() -> None:
    ran: list[str] = []
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():  # ignores cancellation, like a library stuck in a retry loop
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    async def next_step() -> None:
        ran.append("next")

    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        await _bounded("stubborn", stubborn(), seconds=0.2)
        await _bounded("next", next_step(), seconds=0.2)
    assert ran == ["next"]
    assert [(e["event"], e["step"]) for e in logs] == [
        ("shutdown step did not finish; left behind", "stubborn")
    ]
    assert time.monotonic() - started < 5
    released.set()  # let it end before the session's loop closes


async def test_a_failing_step_does_not_stop_the_others() -> None:
    async def failing() -> None:
        raise RuntimeError("broker gone")

    with structlog.testing.capture_logs() as logs:
        await _bounded("failing", failing(), seconds=1)  # logged, not raised
    assert [(e["event"], e["error"]) for e in logs] == [
        ("shutdown step failed", "RuntimeError('broker gone')")
    ]
