"""`tenantctl migrate`, `tenantctl migrations ...`, `tenantctl tenants list`: the migrator's and
tenancy's HTTP APIs for on-call engineers.

    tenantctl migrate TENANT_ID [--to dedicated|shared] [--reason TEXT] [--wait] [--json]
    tenantctl migrations list [--tenant ID] [--status S] [--json]
    tenantctl migrations show ID [--json]
    tenantctl migrations cancel ID [--json]
    tenantctl migrations cleanup ID [--json]
    tenantctl migrations decisions [--tenant ID] [--trigger T] [--outcome O] [--json]
    tenantctl tenants list [--type shared|dedicated] [--json]

`--wait` follows the move until it ends (phase, rows copied, percent, lag, rows/s; a live display on a
terminal) and exits 1 unless it completed. A refused request (404, 409, ...) is one line on stderr
with the problem's detail, exit code 1.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tenantctl.output import Json, emit_json, fail
from tenantctl.settings import ServiceUrls

migrations_app = typer.Typer(no_args_is_help=True, help="Tenant moves: list, show, cancel, clean up.")
tenants_app = typer.Typer(no_args_is_help=True, help="Tenants of the directory.")

TIMEOUT = httpx.Timeout(10.0)
ENDED = {"completed", "failed", "cancelled"}


class Refused(Exception):
    """A problem answer from a service."""


def _urls() -> ServiceUrls:
    return ServiceUrls()


async def _call(method: str, url: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.request(method, url, **kwargs)
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("detail") or body.get("title")
        except ValueError:
            detail = response.text[:200]
        raise Refused(f"{response.status_code}: {detail}")
    return response.json()


def _do(method: str, url: str, **kwargs: Any) -> Any:
    try:
        return asyncio.run(_call(method, url, **kwargs))
    except Refused as refused:
        fail(str(refused))
    except httpx.HTTPError as error:
        fail(f"cannot reach {url}: {type(error).__name__}: {error}")


def summary(migration: dict[str, Any]) -> dict[str, Any]:
    """Rows copied, percent, lag and rows/s from a migration's progress."""
    progress = migration.get("progress") or {}
    tables = progress.get("tables") or {}
    copied = sum(int(t.get("rows", 0)) for t in tables.values())
    total = sum(int(t.get("total", 0)) for t in tables.values())
    percent = (
        100.0
        if migration["phase"] in ("cutover", "cleanup", "done")
        else (round(100.0 * copied / total, 1) if total else 0.0)
    )
    return {
        "phase": migration["phase"],
        "status": migration["status"],
        "rows_copied": copied,
        "rows_total": total,
        "percent": percent,
        "lag": progress.get("lag"),
        "rows_per_second": progress.get("rows_per_second"),
        "freeze_ms": progress.get("freeze_ms"),
    }


def _line(migration: dict[str, Any]) -> str:
    s = summary(migration)
    error = f"  error={migration['error_message']}" if migration.get("error_message") else ""
    # Why it was asked for: the automatic placement's trigger (with its try and not-before), or by hand.
    trigger = migration.get("trigger")
    why = f"trigger={trigger}#{migration.get('attempt', 1)}" if trigger else "trigger=manual"
    if migration.get("not_before") and migration["status"] == "pending":
        why += f"  not_before={migration['not_before']}"
    return (
        f"{migration['id']}  tenant={migration['tenant_id']}  {migration['migration_type']}  "
        f"{s['status']}/{s['phase']}  copied={s['rows_copied']}/{s['rows_total']} ({s['percent']}%)  "
        f"lag={s['lag'] if s['lag'] is not None else '-'}  {why}{error}"
    )


def _decision_line(decision: dict[str, Any]) -> str:
    migration = f"  migration={decision['migration_id']}" if decision.get("migration_id") else ""
    return (
        f"{decision['created_at']}  tenant={decision['tenant_id']}  {decision['trigger']}  "
        f"{decision['action']}->{decision['outcome']}{migration}  {decision['reason']}"
    )


def _table(migration: dict[str, Any]) -> Table:
    s = summary(migration)
    table = Table(title=f"migration {migration['id']} ({migration['migration_type']})")
    for column in ("status", "phase", "rows copied", "percent", "lag", "rows/s", "freeze ms"):
        table.add_column(column)
    table.add_row(
        s["status"],
        s["phase"],
        f"{s['rows_copied']}/{s['rows_total']}",
        f"{s['percent']}%",
        str(s["lag"] if s["lag"] is not None else "-"),
        str(s["rows_per_second"] or "-"),
        str(s["freeze_ms"] or "-"),
    )
    return table


def _wait(migrator: str, migration: dict[str, Any], *, as_json: bool, poll: float = 0.5) -> dict[str, Any]:
    url = f"{migrator}/v1/migrations/{migration['id']}"
    console = Console(stderr=True)
    if as_json or not console.is_terminal:
        while migration["status"] not in ENDED:
            time.sleep(poll)
            migration = _do("GET", url)
            if not as_json:
                typer.echo(_line(migration))
        return migration
    with Live(_table(migration), console=console, refresh_per_second=4) as live:
        while migration["status"] not in ENDED:
            time.sleep(poll)
            migration = _do("GET", url)
            live.update(_table(migration))
    return migration


def migrate(
    tenant_id: Annotated[str, typer.Argument(help="The tenant to move.")],
    to: Annotated[
        Literal["dedicated", "shared"] | None,
        typer.Option("--to", help="Where to (default: away from where it is)."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded with the migration.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the move until it ends.")] = False,
    as_json: Json = False,
) -> None:
    """Ask the migrator to move TENANT_ID online; with --wait, exit 1 unless it completed."""
    body: dict[str, Any] = {"tenant_id": tenant_id}
    if to is not None:
        body["direction"] = f"to_{to}"
    if reason is not None:
        body["reason"] = reason
    migrator = _urls().migrator_url
    migration = _do("POST", f"{migrator}/v1/migrations", json=body)
    if wait:
        migration = _wait(migrator, migration, as_json=as_json)
    if as_json:
        emit_json({**migration, "summary": summary(migration)})
    else:
        typer.echo(_line(migration))
    if wait and migration["status"] != "completed":
        raise typer.Exit(1)


@migrations_app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, in_progress, completed, ...")
    ] = None,
    as_json: Json = False,
) -> None:
    """Migrations, newest first (every page)."""
    migrator = _urls().migrator_url
    params: dict[str, Any] = {"limit": 200}
    if tenant:
        params["tenant_id"] = tenant
    if status:
        params["status"] = status
    items: list[dict[str, Any]] = []
    while True:
        page = _do("GET", f"{migrator}/v1/migrations", params=params)
        items += page["items"]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    if as_json:
        emit_json({"count": len(items), "items": items})
        return
    for item in items:
        typer.echo(_line(item))
    typer.echo(f"{len(items)} migration(s)")


@migrations_app.command("decisions")
def decisions(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    trigger: Annotated[
        str | None, typer.Option("--trigger", help="products, plan_enterprise, compliance_isolation, ...")
    ] = None,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="queued, skipped, recommended, alerted")
    ] = None,
    as_json: Json = False,
) -> None:
    """The automatic placement's decisions, newest first (every page): each trigger seen, what the
    decision matrix made of it and why, the migration it queued."""
    migrator = _urls().migrator_url
    params: dict[str, Any] = {"limit": 200}
    for key, value in (("tenant_id", tenant), ("trigger", trigger), ("outcome", outcome)):
        if value:
            params[key] = value
    items: list[dict[str, Any]] = []
    while True:
        page = _do("GET", f"{migrator}/v1/placement/decisions", params=params)
        items += page["items"]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    if as_json:
        emit_json({"count": len(items), "items": items})
        return
    for item in items:
        typer.echo(_decision_line(item))
    typer.echo(f"{len(items)} decision(s)")


@migrations_app.command("show")
def show(migration_id: str, as_json: Json = False) -> None:
    """One migration, with its progress."""
    migration = _do("GET", f"{_urls().migrator_url}/v1/migrations/{migration_id}")
    if as_json:
        emit_json({**migration, "summary": summary(migration)})
        return
    typer.echo(_line(migration))
    for key, value in sorted((migration.get("progress") or {}).items()):
        typer.echo(f"  {key}: {value}")


@migrations_app.command("cancel")
def cancel(migration_id: str, as_json: Json = False) -> None:
    """Cancel a migration before its cutover (409 once it is past it)."""
    migration = _do("POST", f"{_urls().migrator_url}/v1/migrations/{migration_id}/cancel")
    emit_json(migration) if as_json else typer.echo(_line(migration))


@migrations_app.command("cleanup")
def cleanup(migration_id: str, as_json: Json = False) -> None:
    """Delete a moved tenant's source now instead of after the directory TTL."""
    migration = _do("POST", f"{_urls().migrator_url}/v1/migrations/{migration_id}/cleanup")
    emit_json(migration) if as_json else typer.echo(_line(migration))


@tenants_app.command("list")
def tenants_list(
    tenant_type: Annotated[str | None, typer.Option("--type", help="shared or dedicated")] = None,
    as_json: Json = False,
) -> None:
    """Tenants (not deleted), newest first (every page)."""
    tenancy = _urls().tenancy_url
    params: dict[str, Any] = {"limit": 200}
    if tenant_type:
        params["tenant_type"] = tenant_type
    items: list[dict[str, Any]] = []
    while True:
        page = _do("GET", f"{tenancy}/v1/tenants", params=params)
        items += page["items"]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    if as_json:
        emit_json({"count": len(items), "items": items})
        return
    for t in items:
        typer.echo(
            f"{t['id']}  {t['subdomain']}  {t['plan']}  {t['status']}  {t['tenant_type']}  "
            f"{t['database_name'] or '-'}  products={t['product_count']}"
        )
    typer.echo(f"{len(items)} tenant(s)")


__all__ = ["migrate", "migrations_app", "tenants_app"]
