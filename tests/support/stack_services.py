"""The dev stack's own service processes (CI starts them), paused while a package of tests needs the
field to itself: SIGSTOP/SIGCONT, paused rather than ended, so it catches up afterwards."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from devstack.config import load_config
from devstack.services import running


@contextmanager
def stack_service_paused(name: str) -> Iterator[None]:
    pid = running(load_config()).get(name)
    if pid is not None:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
