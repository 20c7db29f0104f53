"""A shutdown step that hangs, even one that swallows its cancellation, is left behind after its
time: the steps after it still run and the service process ends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from servicekit import app
from servicekit.app import _bounded


class Recorder:
    """Stands in for the module's logger (structlog caches loggers: capture_logs misses them)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda message, **fields: self.lines.append((level, message, fields))


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(app, "log", recorder)
    return recorder


async def test_a_hung_step_is_left_behind_and_the_next_runs(logged: Recorder) -> None:
    ran: list[str] = []
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():  # ignores cancellation, like a library stuck in a retry loop
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    async def next_step() -> None:
        ran.append("next")

    started = time.monotonic()
    await _bounded("stubborn", stubborn(), seconds=0.2)
    await _bounded("next", next_step(), seconds=0.2)
    assert ran == ["next"]
    assert [(level, message, fields["step"]) for level, message, fields in logged.lines] == [
        ("error", "shutdown step did not finish; left behind", "stubborn")
    ]
    assert time.monotonic() - started < 5
    released.set()  # let it end before the session's loop closes


async def test_a_failing_step_does_not_stop_the_others(logged: Recorder) -> None:
    async def failing() -> None:
        raise RuntimeError("broker gone")

    await _bounded("failing", failing(), seconds=1)  # logged, not raised
    assert [(level, message, fields["error"]) for level, message, fields in logged.lines] == [
        ("error", "shutdown step failed", "RuntimeError('broker gone')")
    ]
