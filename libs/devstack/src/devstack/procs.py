"""Process, PID-file, port and package helpers shared by the PostgreSQL and Kafka managers."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from devstack.errors import DevstackError

log = logging.getLogger("devstack")


# ---------------------------------------------------------------------------------------- processes


def is_alive(pid: int) -> bool:
    """True while `pid` runs (zombies count as gone; our own exited children are reaped)."""
    if pid <= 0:
        return False
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name.
    state = stat.rsplit(")", 1)[-1].split()
    return not (state and state[0] in {"Z", "X"})


def cmdline(pid: int) -> list[str]:
    """The command line of `pid` ([] when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pid(path: Path) -> int | None:
    """The PID on the first line of `path`, or None if the file is missing or malformed."""
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.1)
    return not is_alive(pid)


def terminate(pid: int, *, name: str, timeout: float = 30.0, sig: signal.Signals = signal.SIGTERM) -> None:
    """Send `sig` to `pid`, wait up to `timeout` seconds, then SIGKILL."""
    if not is_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if wait_gone(pid, timeout):
        return
    log.warning("%s (pid %d) did not stop within %.0f s; sending SIGKILL", name, pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, 10.0):
        raise DevstackError(f"{name} (pid {pid}) survived SIGKILL")


# --------------------------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port (like the servers do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def require_free_port(port: int, *, what: str, env_var: str) -> None:
    if not port_is_free(port):
        raise DevstackError(
            f"port {port} on 127.0.0.1 ({what}) is already in use by another process; "
            f"set {env_var} to a free port"
        )


def wait_port_free(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_free(port):
            return True
        time.sleep(0.1)
    return port_is_free(port)


# ---------------------------------------------------------------------------------------------- logs


def tail(path: Path, lines: int = 30) -> list[str]:
    """The last `lines` lines of a text file ([] if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return [line.rstrip() for line in data.decode(errors="replace").splitlines()[-lines:]]


def log_details(*paths: Path, lines: int = 30) -> list[str]:
    details: list[str] = []
    for path in paths:
        last = tail(path, lines)
        if last:
            details.append(f"--- last lines of {path} ---")
            details.extend(last)
    return details


# --------------------------------------------------------------------------------------------- locks


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two `up`/`down` runs on one state folder do not interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ packages


def is_root() -> bool:
    return os.geteuid() == 0


_apt_updated = False


def apt_install(*packages: str) -> None:
    """`apt-get install -y` (non-interactive) as root; raises a one-line DevstackError on failure."""
    global _apt_updated
    if not is_root() or shutil.which("apt-get") is None:
        raise DevstackError(f"cannot install {' '.join(packages)}: needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps: list[Sequence[str]] = []
    if not _apt_updated:
        steps.append(["apt-get", "update", "-q"])
    steps.append(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages])
    for step in steps:
        log.info("running: %s", " ".join(step))
        result = subprocess.run(
            step, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            reason = last_meaningful_line(result.stderr or result.stdout)
            raise DevstackError(f"`{' '.join(step)}` failed: {reason}")
        if step[1] == "update":
            _apt_updated = True


def last_meaningful_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "[ERROR]", "ERROR", "error"))]
    if errors:
        return errors[0]
    return lines[-1] if lines else "(no output)"
