"""The closing summary: a plain data object, its JSON form, and its rendering as text lines.

Kept apart from the scenario so its shape is tested without servers (tests/unit/devstack_demo).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from devstack.demo.client import Missing


@dataclass
class TenantRow:
    key: str
    name: str
    subdomain: str
    tenant_id: str
    plan: str
    tenant_type: str
    database_name: str | None
    sent: int
    failed: int
    usage_requests: int | None = None
    usage_products: int | None = None
    usage_orders: int | None = None
    thresholds: list[str] = field(default_factory=list)  # the metrics usage saw crossed


@dataclass
class MoveRow:
    tenant: str
    why: str  # what the demo did to cause it
    migration_id: str | None
    direction: str | None
    status: str  # the migration's, or "not started" / "timed out"
    phase: str | None
    reason: str | None  # the migrator's recorded reason (the trigger that decided it)
    tenant_type: str
    freeze_ms: float | None  # the migrator's own measure of the cutover hold
    longest_request_ms: float | None  # the tenant's slowest request around the flip, as the client saw it
    seconds_to_flip: float | None


@dataclass
class AdvisorRow:
    tenant: str
    now: str
    recommended: str
    reason: str
    cost_now: str
    cost_after: str


@dataclass
class AdvisorView:
    missing: str | None = None  # one line when the endpoint is not served
    error: str | None = None
    rows: list[AdvisorRow] = field(default_factory=list)
    other_tenants: int = 0
    totals: dict[str, str] = field(default_factory=dict)


@dataclass
class Summary:
    mode: str
    seconds: float
    sent: int
    failed: int
    by_kind: dict[str, int]
    failures_by_outcome: dict[str, int]
    failure_details: list[str]
    traffic_rate: float | None
    target_rate: float
    tenants: list[TenantRow]
    moves: list[MoveRow]
    advisor: AdvisorView
    pushed: str
    pushed_dedicated: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The scenario's verdict: no failed request, and the pushed tenant moved by itself."""
        return self.failed == 0 and self.pushed_dedicated

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


# ----------------------------------------------------------------------- the advisor's answer

_TENANT_ID = ("tenant_id", "id")
_NOW = ("placement", "current_placement", "placement_now", "current", "now", "tenant_type")
_RECOMMENDED = ("recommended", "recommended_placement", "recommendation", "target", "placement_after")
_REASON = ("reason", "reasons", "why", "explanation")
_COST_NOW = ("monthly_cost_now", "cost_now", "current_monthly_cost", "monthly_cost", "cost_now_monthly")
_COST_AFTER = (
    "monthly_cost_after",
    "cost_after",
    "recommended_monthly_cost",
    "monthly_cost_recommended",
    "cost_after_monthly",
)
_ITEMS = ("items", "tenants", "plan", "recommendations")


def _first(item: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if name in item and item[name] is not None:
            return item[name]
    return None


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items()) or "-"
    return str(value)


def _side(placement: Any, cost: Any) -> tuple[str, str]:
    """(placement, monthly cost) of one side of a recommendation, flat (`"placement": "shared"`,
    `"monthly_cost_now": 2.5`) or nested (`"current": {"placement": "shared", "monthly_cost": 2.5}`)."""
    if isinstance(placement, Mapping):
        nested = placement
        placement = _first(nested, ("placement", "tenant_type", "database_type", "kind"))
        if cost is None:
            cost = _first(nested, ("monthly_cost", "cost", "monthly", "cost_per_month"))
    return _text(placement), _text(cost)


def advisor_view(plan: Any, names: Mapping[str, str]) -> AdvisorView:
    """The advisor's plan, read loosely (its exact field names are the advisor's to choose): rows of
    the demo's tenants (`names`: tenant id -> name), how many others, and the totals."""
    if isinstance(plan, Missing):
        return AdvisorView(missing=plan.line())
    if not isinstance(plan, Mapping):
        return AdvisorView(error=f"unexpected answer: {str(plan)[:200]}")
    items: list[Any] = []
    for key in _ITEMS:
        if isinstance(plan.get(key), list):
            items = plan[key]
            break
    view = AdvisorView()
    for item in items:
        if not isinstance(item, Mapping):
            continue
        tenant_id = str(_first(item, _TENANT_ID) or "")
        if tenant_id not in names:
            view.other_tenants += 1
            continue
        now, cost_now = _side(_first(item, _NOW), _first(item, _COST_NOW))
        recommended, cost_after = _side(_first(item, _RECOMMENDED), _first(item, _COST_AFTER))
        view.rows.append(
            AdvisorRow(
                tenant=names[tenant_id],
                now=now,
                recommended=recommended,
                reason=_text(_first(item, _REASON)),
                cost_now=cost_now,
                cost_after=cost_after,
            )
        )
    totals = plan.get("totals", plan.get("total"))
    if isinstance(totals, Mapping):
        view.totals = {str(k): _text(v) for k, v in totals.items()}
    return view


# ----------------------------------------------------------------------- text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; numbers (a leading digit or minus) right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            numeric = bool(cell) and (cell[0].isdigit() or (cell[0] == "-" and len(cell) > 1))
            parts.append(cell.rjust(widths[i]) if numeric else cell.ljust(widths[i]))
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers), indent + "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def render_text(summary: Summary) -> list[str]:
    """The summary as lines of text (the same in a terminal and in a log)."""
    lines = [f"== demo summary ({summary.mode} scenario, {summary.seconds:.0f} s) =="]
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(summary.by_kind.items()))
    lines.append(f"requests sent    {summary.sent:,} ({kinds})")
    failed = f"failed requests  {summary.failed:,}"
    if summary.failures_by_outcome:
        failed += " (" + ", ".join(f"{o} x{n}" for o, n in sorted(summary.failures_by_outcome.items())) + ")"
    lines.append(failed)
    for detail in summary.failure_details:
        lines.append(f"  {detail}")
    if summary.traffic_rate is not None:
        lines.append(
            f"traffic          {summary.traffic_rate:.1f} req/s steady (target {summary.target_rate:.1f})"
        )

    lines.append("")
    lines.append("moves (nobody called the migrator: each one the platform's own decision)")
    move_rows = [
        [
            m.tenant,
            m.why,
            m.status + (f"/{m.phase}" if m.phase and m.status != "completed" else ""),
            m.tenant_type,
            m.reason or "-",
            _ms(m.freeze_ms),
            _ms(m.longest_request_ms),
            "-" if m.seconds_to_flip is None else f"{m.seconds_to_flip:.1f} s",
        ]
        for m in summary.moves
    ]
    lines += table(
        [
            "tenant",
            "what happened",
            "migration",
            "now",
            "migrator's reason",
            "freeze",
            "slowest req.",
            "to flip",
        ],
        move_rows,
    )
    lines.append("  freeze: the migrator's record of how long the tenant's writes were held at the cutover;")
    lines.append(
        "  slowest req.: the tenant's slowest request in flight around the flip, as the client saw it"
    )

    lines.append("")
    lines.append("where each tenant lives now, and what usage counted (sent: the demo's own count)")
    lines += table(
        [
            "tenant",
            "plan",
            "placement",
            "database",
            "sent",
            "failed",
            "usage: requests",
            "products",
            "orders",
            "thresholds crossed",
        ],
        [
            [
                t.name,
                t.plan,
                t.tenant_type,
                t.database_name or "shared",
                _count(t.sent),
                _count(t.failed),
                _count(t.usage_requests),
                _count(t.usage_products),
                _count(t.usage_orders),
                ", ".join(t.thresholds) or "-",
            ]
            for t in summary.tenants
        ],
    )

    lines.append("")
    advisor = summary.advisor
    if advisor.missing:
        lines.append(f"advisor          {advisor.missing}")
    elif advisor.error:
        lines.append(f"advisor          {advisor.error}")
    else:
        lines.append("advisor (GET /v1/placement/plan)")
        lines += table(
            ["tenant", "now", "recommended", "reason", "cost/month now", "after"],
            [[r.tenant, r.now, r.recommended, r.reason, r.cost_now, r.cost_after] for r in advisor.rows],
        )
        if advisor.other_tenants:
            lines.append(f"  (+ {advisor.other_tenants} other tenant(s) in the plan)")
        if advisor.totals:
            lines.append("  totals: " + "; ".join(f"{k} {v}" for k, v in advisor.totals.items()))

    for warning in summary.warnings:
        lines.append(f"warning: {warning}")
    lines.append("")
    pushed = "dedicated" if summary.pushed_dedicated else "NOT dedicated"
    verdict = "OK" if summary.ok else "FAILED"
    lines.append(f"result: {verdict} ({summary.failed:,} failed requests; {summary.pushed} {pushed})")
    return lines
