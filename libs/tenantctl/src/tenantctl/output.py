"""What every tenantctl command shares: settings from the environment, `--json` or human output,
and one way to fail (a message on stderr, exit code 1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from tenantctl.settings import TenantctlSettings

T = TypeVar("T")

Json = Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for machines.")]


def fail(message: str) -> NoReturn:
    typer.echo(f"tenantctl: error: {message}", err=True)
    raise typer.Exit(1)


def settings() -> TenantctlSettings:
    try:
        return TenantctlSettings()  # filled from the environment
    except ValidationError as error:
        missing = ", ".join(str(e["loc"][0]).upper() for e in error.errors())
        fail(f"missing or invalid settings: {missing} (environment variables, as for the services)")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the command's I/O; any error becomes one line on stderr and exit code 1."""
    try:
        return asyncio.run(coroutine)
    except Exception as error:
        fail(f"{type(error).__name__}: {error}")


def emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))
