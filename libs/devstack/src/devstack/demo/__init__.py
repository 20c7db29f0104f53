"""The live demo that `make run` plays once the stack and its five services are ready.

`DEMO=0` turns it off, `DEMO=short` plays the test's short scenario, `DEMO_EXIT=1` stops the stack
after the summary (exit code 1 when the short scenario failed), `DEMO_SUMMARY_FILE=path` also writes
the summary as JSON. `python -m devstack.demo` plays it against a stack that is already up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from devstack.demo.display import Board, Display, make_display
from devstack.demo.report import Summary, render_text
from devstack.demo.scenario import run_demo
from devstack.demo.settings import Scenario, load_scenario

log = logging.getLogger("devstack.demo")

STOP_POLL_SECONDS = 0.2

__all__ = ["Scenario", "Summary", "load_scenario", "play", "play_until_stopped"]


def exit_code(scenario: Scenario, summary: Summary) -> int:
    """Non-zero only in the short (test) scenario, and only when it failed."""
    return 1 if scenario.strict and not summary.ok else 0


async def play(
    urls: Mapping[str, str],
    scenario: Scenario,
    *,
    display_factory: Callable[[Board], Display] = make_display,
) -> Summary:
    """Play the scenario against the services at `urls` (stack.env's TENANCY_URL, ...), print the
    summary, and write it as JSON when the scenario names a file."""
    holder: list[Display] = []

    def factory(board: Board) -> Display:
        display = display_factory(board)
        holder.append(display)
        return display

    summary = await run_demo(urls, scenario, factory)
    lines = render_text(summary)
    holder[0].print_lines(["", *lines])
    if scenario.summary_file:
        text = json.dumps(summary.to_json(), indent=2) + "\n"
        await asyncio.to_thread(Path(scenario.summary_file).write_text, text)
    return summary


def play_until_stopped(urls: Mapping[str, str], scenario: Scenario, stopping: threading.Event) -> int | None:
    """For `devstack run` (a thread of its own): play, then, with DEMO_EXIT=1, return the exit code
    (the stack stops with it); else wait until the stack stops (Ctrl-C) and return it then, so the
    short scenario's verdict is `run`'s exit code either way. `stopping` set (Ctrl-C, a component
    died) cancels a scenario still playing: None, no verdict."""

    async def main() -> int | None:
        task = asyncio.create_task(play(urls, scenario))
        while not task.done():
            if stopping.is_set():
                task.cancel()
                break
            await asyncio.wait({task}, timeout=STOP_POLL_SECONDS)
        try:
            summary = await task
        except asyncio.CancelledError:
            return None
        code = exit_code(scenario, summary)
        if scenario.exit_after_summary:
            return code
        print("demo: done; the services keep running (Ctrl-C stops everything)", flush=True)
        await asyncio.to_thread(stopping.wait)
        return code

    try:
        return asyncio.run(main())
    except Exception:
        log.exception("the demo failed")
        return 1 if scenario.exit_after_summary else None
