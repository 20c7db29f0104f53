"""`tenantctl placement plan`: the migrator's placement advisor (`GET /v1/placement/plan`) for
on-call engineers.

    tenantctl placement plan [--tenant ID ...] [--changes] [--apply] [--json]

A table (tenant, plan, now -> recommended, reason, cost now/after) and the totals line. `--apply`
asks for exactly the recommended moves, one `POST /v1/migrations` each with its direction and a reason
naming the plan's rule; a tenant already moving (409) is reported and skipped, not a failure; any
other refusal makes the exit code 1 after every move was tried.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tenantctl.migrations import Refused, _do, _urls, call
from tenantctl.output import Json, emit_json

app = typer.Typer(no_args_is_help=True, help="Where tenants should live, and what it costs.")

DIRECTIONS = {"promote": "to_dedicated", "demote": "to_shared"}


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _table(plan: dict[str, Any]) -> Table:
    table = Table(title=f"placement plan {plan['generated_on']}")
    for column in ("tenant", "plan", "now → recommended", "reason", "cost now", "cost after"):
        table.add_column(column, justify="right" if column.startswith("cost") else "left")
    for item in plan["items"]:
        arrow = (
            item["placement_now"]
            if item["action"] == "stay"
            else f"[bold]{item['placement_now']} → {item['recommended']}[/bold]"
        )
        table.add_row(
            item["tenant_id"],
            item["plan"],
            arrow,
            item["reason"],
            _money(item["monthly_cost_now"]),
            _money(item["monthly_cost_after"]),
        )
    return table


def totals_line(totals: dict[str, Any]) -> str:
    def saving(value: float | None) -> str:
        return "-" if value is None else f"{value:g} %"

    return (
        f"{totals['tenants']} tenant(s): {totals['shared_now']} shared / {totals['dedicated_now']} dedicated "
        f"now, {totals['shared_after']} / {totals['dedicated_after']} after "
        f"({totals['promotions']} to promote, {totals['demotions']} to demote); "
        f"monthly cost {_money(totals['monthly_cost_now'])} now, {_money(totals['monthly_cost_after'])} "
        f"after, {_money(totals['monthly_cost_all_dedicated'])} if all dedicated "
        f"(saving {saving(totals['saving_vs_all_dedicated_percent_now'])} now, "
        f"{saving(totals['saving_vs_all_dedicated_percent_after'])} after)"
    )


def _apply(migrator: str, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One request per recommended move; the outcome of each (queued, already_moving, refused)."""
    outcomes: list[dict[str, Any]] = []
    for item in plan["items"]:
        if item["action"] == "stay":
            continue
        body = {
            "tenant_id": item["tenant_id"],
            "direction": DIRECTIONS[item["action"]],
            "reason": f"placement plan {plan['generated_on']}: {item['rule']}: {item['reason']}",
        }
        outcome: dict[str, Any] = {"tenant_id": item["tenant_id"], "direction": body["direction"]}
        try:
            migration = call("POST", f"{migrator}/v1/migrations", json=body)
            outcome |= {"result": "queued", "migration_id": migration["id"]}
        except Refused as refused:
            result = "already_moving" if refused.status == 409 else "refused"
            outcome |= {"result": result, "error": str(refused)}
        outcomes.append(outcome)
    return outcomes


@app.command("plan")
def plan_command(
    tenant: Annotated[
        list[str] | None, typer.Option("--tenant", help="Only these tenants (repeat); totals over them.")
    ] = None,
    changes: Annotated[bool, typer.Option("--changes", help="List only the moves.")] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Ask the migrator for the recommended moves.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Per tenant: where it lives, where it should live and why, its monthly cost now and after."""
    migrator = _urls().migrator_url
    params: dict[str, Any] = {"only_changes": str(changes).lower()}
    if tenant:
        params["tenant_id"] = tenant
    plan = _do("GET", f"{migrator}/v1/placement/plan", params=params)
    applied = _apply(migrator, plan) if apply else None
    if as_json:
        emit_json(plan if applied is None else {**plan, "applied": applied})
    else:
        Console(width=200).print(_table(plan))
        typer.echo(totals_line(plan["totals"]))
        for outcome in applied or []:
            what = outcome.get("migration_id") or outcome.get("error")
            typer.echo(f"{outcome['result']}  {outcome['tenant_id']}  {outcome['direction']}  {what}")
        if applied is not None:
            queued = sum(1 for o in applied if o["result"] == "queued")
            typer.echo(f"{queued} move(s) queued of {len(applied)} recommended")
    if applied and any(o["result"] == "refused" for o in applied):
        raise typer.Exit(1)
