"""`python -m devstack up|down|status|run|env`."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Annotated, TypeVar

import typer

from devstack import stack
from devstack.errors import DevstackError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The local development stack: PostgreSQL, Apache Kafka (KRaft) and the services, without Docker.",
)

T = TypeVar("T")


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("devstack")
    if not any(getattr(h, "_devstack", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("devstack: %(message)s"))
        handler._devstack = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _guard(action: Callable[[], T]) -> T:
    """Run `action`; a DevstackError becomes one error line (plus details) and exit code 1."""
    try:
        return action()
    except DevstackError as exc:
        typer.echo(f"devstack: error: {exc.message}", err=True)
        for line in exc.details:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("devstack: interrupted", err=True)
        raise typer.Exit(130) from None


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")]


@app.command()
def up(quiet: Quiet = False) -> None:
    """Start PostgreSQL and Kafka in the background if needed, migrate, create topics, write stack.env."""
    _setup_logging(quiet)
    # SIGTERM (a CI timeout, say) interrupts like Ctrl-C, so a half-done start is rolled back.
    signal.signal(signal.SIGTERM, _interrupt)
    result = _guard(lambda: stack.up(allow_containers=False))
    for line in result.summary():
        typer.echo(line)


@app.command()
def down(quiet: Quiet = False) -> None:
    """Stop exactly the processes `up` started (from their PID files) and remove stack.env."""
    _setup_logging(quiet)
    stopped = _guard(stack.down)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status() -> None:
    """Show what runs."""
    _setup_logging(True)
    for component in _guard(stack.status):
        typer.echo(f"{component.name:<12} {component.state:<9} {component.detail}")


@app.command()
def run(quiet: Quiet = False) -> None:
    """`up`, then stay in the foreground until Ctrl-C / SIGTERM, then `down`."""
    _setup_logging(quiet)

    def _ready(result: stack.UpResult) -> None:
        for line in result.summary():
            typer.echo(line)

    code = _guard(lambda: stack.run(on_ready=_ready, companion=_demo_companion()))
    raise typer.Exit(code)


def _demo_companion() -> stack.Companion | None:
    """The live demo (devstack.demo) once everything is ready, unless DEMO=0 or not all five
    services run (DEVSTACK_SERVICES names a subset)."""
    from devstack import demo
    from devstack.services import SERVICES

    scenario = _guard(demo.load_scenario)
    if not scenario.enabled:
        return None
    selected = _guard(lambda: stack.selected_services(SERVICES))
    if len(selected) != len(SERVICES):
        typer.echo("demo: skipped (it needs all five services; DEVSTACK_SERVICES names fewer)", err=True)
        return None

    def _play(result: stack.UpResult, stopping: threading.Event) -> int | None:
        return demo.play_until_stopped(result.env, scenario, stopping)

    return _play


@app.command()
def env(
    export: Annotated[bool, typer.Option("--export", help="Prefix lines with `export ` (for eval).")] = False,
) -> None:
    """Print stack.env (KEY=VALUE lines)."""
    _setup_logging(True)
    values = _guard(lambda: stack.read_stack_env(apply_overrides=False))
    prefix = "export " if export else ""
    for key, value in values.items():
        typer.echo(f"{prefix}{key}={value}")


def main() -> None:
    app(prog_name="devstack")
