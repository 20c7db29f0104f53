"""Processes the benchmarks start beside the servers they measure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def relays(env: Mapping[str, str], log_dir: Path, count: int) -> Iterator[list[Path]]:
    """`count` outbox relays as their own processes (`python -m servicekit.relay`), stopped on exit;
    yields their log files."""
    child = {**os.environ, **env, "LOG_LEVEL": "WARNING"}
    logs = [log_dir / f"relay-{i}.log" for i in range(count)]
    handles = [path.open("wb") for path in logs]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "servicekit.relay"], env=child, stdout=h, stderr=subprocess.STDOUT
        )
        for h in handles
    ]
    try:
        yield logs
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        for handle in handles:
            handle.close()
