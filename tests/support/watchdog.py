"""A hung test ends the run with a diagnosis instead of eating CI's whole time budget.

Each test (setup, call and teardown together) gets `TEST_TIMEOUT_SECONDS` (300 s unless set). When it
runs over, the watchdog thread prints every asyncio task of the session's loop with its stack (an
awaited coroutine is invisible in a thread dump), then every thread's stack, and ends pytest with exit
code 3. Ending the process is the only safe way out: the stuck task may hold the one event loop all
later tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import inspect
import io
import os
import sys
import threading
from collections.abc import Iterator

import pytest

TIMEOUT_SECONDS = float(os.environ.get("TEST_TIMEOUT_SECONDS", "300"))
EXIT_CODE = 3

_loop: asyncio.AbstractEventLoop | None = None


def remember_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _loop
    _loop = loop


def _asyncio_tasks() -> str:
    loop = _loop
    if loop is None or loop.is_closed():
        return "no event loop recorded\n"
    out = io.StringIO()
    # all_tasks() is not thread-safe against a running loop; a copy may miss a task, which is fine here.
    for task in list(asyncio.tasks._all_tasks):  # type: ignore[attr-defined]
        if task.get_loop() is not loop or task.done():
            continue
        print(f"--- {task.get_name()}", file=out)
        for line in _awaiting(task.get_coro()):
            print(f"    {line}", file=out)
    # A task awaiting an async generator (a fixture, a lifespan) shows no frames past it: list the
    # running generators too.
    for generator in gc.get_objects():
        if inspect.isasyncgen(generator) and generator.ag_running:
            print(f"--- async generator {generator.__qualname__}", file=out)
            for line in _awaiting(generator):
                print(f"    {line}", file=out)
    return out.getvalue() or "no pending tasks\n"


_FRAME = ("cr_frame", "ag_frame", "gi_frame")
_AWAIT = ("cr_await", "ag_await", "gi_yieldfrom")


def _awaiting(coro: object) -> list[str]:
    """The chain of awaits a suspended coroutine sits in (Task.print_stack shows only its top frame)."""
    lines: list[str] = []
    while coro is not None and len(lines) < 60:
        frame = next((f for a in _FRAME if (f := getattr(coro, a, None)) is not None), None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = next((c for a in _AWAIT if (c := getattr(coro, a, None)) is not None), None)
    if coro is not None:
        lines.append(repr(coro))
    return lines


def _expire(item: pytest.Item) -> None:
    nodeid = item.nodeid
    # pytest captures fd 2 during a test: give the terminal back first, as pytest-timeout does.
    capture = item.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with contextlib.suppress(Exception):
            capture.suspend_global_capture(in_=True)
    target = sys.stderr
    print(f"\n\nWATCHDOG: {nodeid} ran over {TIMEOUT_SECONDS:.0f} s; asyncio tasks:\n", file=target)
    try:
        print(_asyncio_tasks(), file=target)
    except Exception as error:  # the diagnosis must never keep the process from ending
        print(f"(could not list tasks: {error!r})", file=target)
    print("WATCHDOG: threads:\n", file=target, flush=True)
    faulthandler.dump_traceback(file=target, all_threads=True)
    target.flush()
    try:
        with open(os.path.join(".devstack", "pytest-exit-code"), "w") as code:
            code.write(f"{EXIT_CODE}\n")
    except OSError:
        pass
    os._exit(EXIT_CODE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if TIMEOUT_SECONDS <= 0:
        yield
        return
    timer = threading.Timer(TIMEOUT_SECONDS, _expire, args=(item,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
