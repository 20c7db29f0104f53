"""`tenantctl placement plan`: the migrator's placement advisor (`GET /v1/placement/plan`) for
on-call engineers.

    tenantctl placement plan [--tenant ID ...] [--changes] [--apply] [--json]

A table (tenant, plan, now -> recommended, reason, cost now/after) and the totals line. `--apply`
asks the migrator for exactly the recommended moves (`POST /v1/placement/plan/apply`: the plan is
computed and each move requested with its direction and a reason naming the plan's rule, in one
request); a tenant already moving is reported (`already_moving`), not a failure; any other refusal
makes the exit code 1 (every move was still tried).
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from tenantctl.migrations import _do, _urls
from tenantctl.output import Json, emit_json

# A plan reads every tenant's recent usage: seconds for 10,000 tenants (bench_placement), more than
# the 10 s the other commands allow under load.
PLAN_TIMEOUT = httpx.Timeout(120.0, connect=10.0)

app = typer.Typer(no_args_is_help=True, help="Where tenants should live, and what it costs.")


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
    if apply:
        # The migrator computes the plan and asks for its moves in one request (no plan read here
        # going stale before its moves are asked for).
        plan = _do("POST", f"{migrator}/v1/placement/plan/apply", params=params, timeout=PLAN_TIMEOUT)
    else:
        plan = _do("GET", f"{migrator}/v1/placement/plan", params=params, timeout=PLAN_TIMEOUT)
    applied: list[dict[str, Any]] | None = plan.get("applied")
    if as_json:
        emit_json(plan)
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
