"""runner._together: a failed step's siblings are cancelled and finished before its error is raised,
so nothing of a failed phase (a connection still being opened) outlives it."""

from __future__ import annotations

import asyncio

import pytest
from migrator.runner import _together


async def test_the_results_in_order_when_every_step_succeeds() -> None:
    async def value(result: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return result

    assert await _together(value(1, 0.02), value(2, 0.0)) == [1, 2]


async def test_a_failure_cancels_and_awaits_the_others_then_raises_itself() -> None:
    finished: list[str] = []

    async def slow_open() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)  # closing what it opened takes a moment, and is waited for
            finished.append("sibling closed")

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionRefusedError("no slot")

    with pytest.raises(ConnectionRefusedError, match="no slot"):
        await _together(slow_open(), failing())
    assert finished == ["sibling closed"]  # before the error reached the caller


async def test_cancelling_the_caller_cancels_the_steps() -> None:
    cancelled: list[bool] = []

    async def step() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    task = asyncio.create_task(_together(step(), step()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == [True, True]
