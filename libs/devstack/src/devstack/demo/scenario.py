"""The story `make run` tells, step by step, through the services' public HTTP APIs only.

1. Three tenants on different plans, each with a few products and a customer.
2. Steady traffic on all of them (product reads, order writes; `load.py`).
3. One tenant pushed past the products trigger (10,000) through catalog's bulk endpoint, and right
   after, another upgraded to enterprise: two automatic moves, the demo never calls the migrator.
4. Wait (bounded) until both are dedicated, showing each move's phase and progress.
5. Downgrade the upgraded tenant to basic and ask the advisor what it recommends for it.
6. Traffic a little longer on the new placements, then the summary.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from devstack.demo.client import Missing, PlatformClient
from devstack.demo.display import Board, BoardTenant, Display
from devstack.demo.load import LoadGenerator, TrafficTarget
from devstack.demo.report import AdvisorView, MoveRow, Summary, TenantRow, advisor_view
from devstack.demo.settings import TENANTS, Scenario
from devstack.demo.tally import Tally

log = logging.getLogger("devstack.demo")

FLIP_WINDOW_MARGIN = 0.25  # seconds either side of the freeze searched for the slowest request
NUDGE_AFTER = 30.0  # seconds without a migration before the demo says it is still waiting
READ_MODEL_NUDGE_AFTER = 10.0


class ScenarioAborted(Exception):
    """A step the rest depends on failed (tenants could not be created, say)."""


@dataclass
class DemoTenant:
    key: str
    name: str
    subdomain: str
    plan: str
    tenant_id: str = ""
    tenant_type: str = "shared"
    database_name: str | None = None
    product_ids: list[str] = field(default_factory=list)
    email: str = "buyer@example.com"


@dataclass
class MoveWatch:
    """One automatic move the demo caused and waits for."""

    tenant: DemoTenant
    why: str
    caused_at: float  # wall clock of the request that should trigger it
    migration: dict[str, Any] | None = None
    flipped_seen_at: float | None = None
    last_shared_seen_at: float | None = None
    last_phase: str | None = None
    nudged: bool = False  # "no migration yet" said once

    @property
    def done(self) -> bool:
        return self.tenant.tenant_type == "dedicated"


def _latest(migrations: Any, since: float) -> dict[str, Any] | None:
    """The newest migration of a list answer started after `since` - 5 s (the clocks are the same
    machine's; the margin covers a migration row created just before the trigger's answer came)."""
    if not isinstance(migrations, Mapping) or not isinstance(migrations.get("items"), list):
        return None
    best: tuple[float, dict[str, Any]] | None = None
    for item in migrations["items"]:
        try:
            started = datetime.fromisoformat(str(item["started_at"])).timestamp()
        except (KeyError, ValueError):
            continue
        if started >= since - 5 and (best is None or started > best[0]):
            best = (started, item)
    return best[1] if best else None


def describe_progress(migration: Mapping[str, Any]) -> str:
    """A migration's phase and, while it copies, rows copied of total (from its recorded progress)."""
    phase = str(migration.get("phase", "?"))
    status = str(migration.get("status", "?"))
    progress = migration.get("progress") or {}
    text = f"{status}/{phase}"
    tables = progress.get("tables") if isinstance(progress, Mapping) else None
    if phase in ("copy", "catch_up", "verify") and isinstance(tables, Mapping):
        rows = sum(int(t.get("rows", 0)) for t in tables.values() if isinstance(t, Mapping))
        total = sum(int(t.get("total", 0)) for t in tables.values() if isinstance(t, Mapping))
        text += f" {rows:,}/{total:,} rows"
    if isinstance(progress, Mapping) and progress.get("lag") and phase in ("catch_up", "verify", "cutover"):
        text += f", lag {progress['lag']}"
    if isinstance(progress, Mapping) and progress.get("freeze_ms") is not None:
        text += f", freeze {float(progress['freeze_ms']):.0f} ms"
    return text


class Demo:
    def __init__(
        self,
        urls: Mapping[str, str],
        scenario: Scenario,
        display_factory: Callable[[Board], Display],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        suffix: str | None = None,
    ) -> None:
        self.scenario = scenario
        self.tally = Tally()
        self.board = Board(self.tally)
        self.display: Display = display_factory(self.board)
        self.client = PlatformClient(urls, self.tally, timeout=scenario.request_timeout, transport=transport)
        self.suffix = suffix or secrets.token_hex(3)
        self.tenants = [
            DemoTenant(spec.key, spec.name, f"{spec.subdomain_prefix}-{self.suffix}", spec.plan)
            for spec in TENANTS
        ]
        self.load = LoadGenerator(self.client, scenario.reads_per_second, scenario.orders_per_second)
        self.moves: list[MoveWatch] = []
        self.warnings: list[str] = []
        self.started = time.monotonic()

    def tenant(self, key: str) -> DemoTenant:
        return next(t for t in self.tenants if t.key == key)

    def step(self, text: str) -> None:
        self.board.step = text
        self.display.event(text, step=True)

    def event(self, text: str) -> None:
        self.display.event(text)

    async def pause(self, seconds: float) -> None:
        """Sleep while the board refreshes (the plain display prints a status line now and then)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.display.tick()
            await asyncio.sleep(min(left, 0.5))

    # ------------------------------------------------------------------ the story

    async def run(self) -> Summary:
        """The story, then the summary; the display and the clients are closed however it ends
        (a cancel, i.e. Ctrl-C, included)."""
        try:
            try:
                await self._story()
            except ScenarioAborted as error:
                self.warnings.append(f"scenario stopped: {error}")
                self.event(f"scenario stopped: {error}")
                log.debug("demo scenario stopped: %s", error)
            finally:
                if self.load.running:
                    await self.load.stop()
            return await self._summary()
        finally:
            await self.client.aclose()
            self.display.close()

    async def _story(self) -> None:
        self.step("creating tenants")
        for tenant in self.tenants:
            await self._create(tenant)
        self.step("seeding products and customers; waiting for orders' read model")
        await asyncio.gather(*(self._seed(tenant) for tenant in self.tenants))

        self.load.targets = [TrafficTarget(t.key, t.tenant_id, t.product_ids, t.email) for t in self.tenants]
        self.load.start()
        rates = f"{self.scenario.reads_per_second:g} reads/s + {self.scenario.orders_per_second:g} orders/s"
        self.step(f"steady traffic on {len(self.tenants)} tenants ({rates} each)")
        await self.pause(self.scenario.steady_before_push)

        pushed = self.tenant("pushed")
        self.step(
            f"pushing {pushed.name} past {self.scenario.push_products:,} products (its traffic goes on)"
        )
        await self._push(pushed)
        self.moves.append(MoveWatch(pushed, "pushed past the products trigger", time.time()))

        upgraded = self.tenant("upgraded")
        self.step(f"upgrading {upgraded.name} to enterprise")
        answer = await self.client.set_plan(upgraded.tenant_id, "enterprise")
        if not answer.ok:
            self.warnings.append(f"upgrade of {upgraded.name} refused: {answer.describe()}")
        else:
            upgraded.plan = "enterprise"
            self.board.tenants[upgraded.key].plan = "enterprise"
            self.moves.append(MoveWatch(upgraded, "plan upgraded to enterprise", time.time()))

        self.step("waiting for the automatic moves (nobody calls the migrator)")
        await self._wait_for_moves()

        await self._downgrade()
        self.step("traffic on the new placements")
        await self.pause(self.scenario.steady_after_moves)
        await self.load.stop()

    async def _create(self, tenant: DemoTenant) -> None:
        answer = await self.client.create_tenant(tenant.name, tenant.subdomain, tenant.plan)
        if not answer.ok:
            raise ScenarioAborted(f"tenant {tenant.subdomain} not created: {answer.describe()}")
        tenant.tenant_id = str(answer.body["id"])
        tenant.tenant_type = str(answer.body.get("tenant_type", "shared"))
        self.board.tenants[tenant.key] = BoardTenant(tenant.name, tenant.plan, tenant.tenant_type)
        self.event(f"{tenant.name} ({tenant.plan}, {tenant.tenant_type}): {tenant.tenant_id}")
        # Debug only: devstack's log handler writes to the terminal the live board is drawn on.
        log.debug("demo tenant %s created: %s", tenant.subdomain, tenant.tenant_id)

    async def _seed(self, tenant: DemoTenant) -> None:
        items = [
            {"name": f"{tenant.name} item {i}", "price": f"{10 + i}.90", "status": "active"}
            for i in range(self.scenario.warm_up_products)
        ]
        answer = await self.client.bulk_products(tenant.key, tenant.tenant_id, items)
        if not answer.ok:
            raise ScenarioAborted(f"products of {tenant.name} not created: {answer.describe()}")
        tenant.product_ids = [str(i) for i in answer.body["ids"]]
        customer = await self.client.create_customer(tenant.key, tenant.tenant_id, tenant.email)
        if not customer.ok:
            raise ScenarioAborted(f"customer of {tenant.name} not created: {customer.describe()}")
        # orders learns of products from catalog's events: until then an order is a 422.
        started = time.monotonic()
        deadline = started + self.scenario.read_model_timeout
        nudged = False
        while True:
            order = await self.client.place_order(
                tenant.key,
                tenant.tenant_id,
                tenant.email,
                tenant.product_ids[-1],
                kind="setup",
                tolerate=(422,),
            )
            if order.ok:
                return
            if order.status != 422:
                raise ScenarioAborted(f"orders refused an order of {tenant.name}: {order.describe()}")
            if time.monotonic() > deadline:
                raise ScenarioAborted(
                    f"orders never accepted an order of {tenant.name} within "
                    f"{self.scenario.read_model_timeout:.0f} s: {order.describe()} (its product read model "
                    "applies catalog.products.v1 one event at a time; a backlog of an earlier run's bulk "
                    "products delays it)"
                )
            if not nudged and time.monotonic() - started > READ_MODEL_NUDGE_AFTER:
                nudged = True
                self.event(
                    f"{tenant.name}: orders has not seen its products yet (it applies catalog's events; "
                    "an earlier run's backlog delays it): waiting up to "
                    f"{self.scenario.read_model_timeout:.0f} s"
                )
            await asyncio.sleep(0.3)

    async def _push(self, tenant: DemoTenant) -> None:
        total = self.scenario.push_products
        batch = self.scenario.bulk_batch
        made = 0
        while made < total:
            size = min(batch, total - made)
            items = [{"name": f"{tenant.name} bulk {made + i}", "price": "4.50"} for i in range(size)]
            answer = await self.client.bulk_products(tenant.key, tenant.tenant_id, items)
            if not answer.ok:
                raise ScenarioAborted(f"bulk products of {tenant.name} refused: {answer.describe()}")
            made += size
            self.board.tenants[tenant.key].move = f"{made + len(tenant.product_ids):,} products"
            self.display.tick()
        self.event(f"{tenant.name}: {made + len(tenant.product_ids):,} products")

    async def _poll(self, watch: MoveWatch) -> None:
        tenant = watch.tenant
        now = time.time()
        found = await self.client.get_tenant(tenant.tenant_id)
        if found.ok:
            tenant.tenant_type = str(found.body.get("tenant_type"))
            tenant.database_name = found.body.get("database_name")
            self.board.tenants[tenant.key].tenant_type = tenant.tenant_type
        migrations = await self.client.migrations(tenant.tenant_id)
        migration = _latest(migrations.body, watch.caused_at) if migrations.ok else None
        if migration is not None:
            if watch.migration is None:
                self.event(
                    f"{tenant.name}: migration {str(migration['id'])[:8]} started by the platform "
                    f"(reason: {migration.get('reason') or '-'})"
                )
            watch.migration = migration
            progress = describe_progress(migration)
            self.board.tenants[tenant.key].move = progress
            state = f"{migration.get('status')}/{migration.get('phase')}"
            if state != watch.last_phase:
                watch.last_phase = state
                error = migration.get("error_message")
                self.event(f"{tenant.name}: {progress}" + (f": {error}" if error else ""))
        if tenant.tenant_type == "dedicated":
            if watch.flipped_seen_at is None:
                watch.flipped_seen_at = now
                self.event(f"{tenant.name} is dedicated now: {tenant.database_name}")
        else:
            watch.last_shared_seen_at = now

    async def _wait_for_moves(self) -> None:
        deadline = time.monotonic() + self.scenario.move_timeout
        pending = [w for w in self.moves if not w.done]
        while pending:
            for watch in pending:
                await self._poll(watch)
            pending = [w for w in pending if not w.done]
            if not pending:
                break
            for watch in pending:
                if (
                    watch.migration is None
                    and not watch.nudged
                    and time.time() - watch.caused_at > NUDGE_AFTER
                ):
                    watch.nudged = True
                    self.event(
                        f"{watch.tenant.name}: no migration yet after {NUDGE_AFTER:.0f} s; waiting up to "
                        f"{self.scenario.move_timeout:.0f} s for the platform to decide"
                    )
            if time.monotonic() > deadline:
                for watch in pending:
                    if watch.migration is None:
                        message = (
                            f"{watch.tenant.name}: no migration was started within "
                            f"{self.scenario.move_timeout:.0f} s of '{watch.why}' "
                            "(is the migrator's automatic placement running?)"
                        )
                    else:
                        error = watch.migration.get("error_message")
                        message = (
                            f"{watch.tenant.name}: still {describe_progress(watch.migration)} after "
                            f"{self.scenario.move_timeout:.0f} s"
                            + (f" (last error: {error})" if error else "")
                        )
                    self.warnings.append(message)
                    self.event(message)
                return
            self.display.tick()
            await asyncio.sleep(self.scenario.poll_interval)

    async def _downgrade(self) -> None:
        upgraded = self.tenant("upgraded")
        if upgraded.tenant_type != "dedicated":
            self.warnings.append(f"no downgrade: {upgraded.name} never became dedicated")
            return
        self.step(f"downgrading {upgraded.name} to basic; asking the advisor")
        answer = await self.client.set_plan(upgraded.tenant_id, "basic")
        if not answer.ok:
            self.warnings.append(f"downgrade of {upgraded.name} refused: {answer.describe()}")
            return
        upgraded.plan = "basic"
        self.board.tenants[upgraded.key].plan = "basic"
        view = await self._advisor()
        if view.missing or view.error:
            self.event(view.missing or view.error or "")
            return
        row = next((r for r in view.rows if r.tenant == upgraded.name), None)
        if row is None:
            self.event(f"advisor: no recommendation for {upgraded.name}")
        else:
            self.event(f"advisor on {upgraded.name}: {row.now} -> {row.recommended} ({row.reason})")

    async def _advisor(self) -> AdvisorView:
        plan = await self.client.placement_plan()
        if isinstance(plan, Missing):
            return advisor_view(plan, {})
        if not plan.ok:
            return AdvisorView(error=f"advisor (GET /v1/placement/plan): {plan.describe()}")
        return advisor_view(plan.body, {t.tenant_id: t.name for t in self.tenants if t.tenant_id})

    # ------------------------------------------------------------------ the summary

    def _move_row(self, watch: MoveWatch) -> MoveRow:
        migration = watch.migration or {}
        progress = migration.get("progress") or {}
        freeze_ms = progress.get("freeze_ms")
        flipped_at = progress.get("flipped_at")
        # The cutover window: the migrator's recorded hold when it has one, else between the last
        # poll that saw the tenant shared and the first that saw it dedicated.
        window: tuple[float, float] | None = None
        if flipped_at is not None:
            frozen = float(freeze_ms or 0) / 1000
            flipped = float(flipped_at)
            window = (flipped - frozen - FLIP_WINDOW_MARGIN, flipped + FLIP_WINDOW_MARGIN)
        elif watch.flipped_seen_at is not None:
            window = (watch.last_shared_seen_at or watch.caused_at, watch.flipped_seen_at)
        longest = None
        if window is not None:
            slowest = self.tally.longest_in_window(watch.tenant.key, *window)
            longest = slowest.seconds * 1000 if slowest else None
        flip_time = float(flipped_at) if flipped_at is not None else watch.flipped_seen_at
        status = "not started" if watch.migration is None else str(migration.get("status"))
        return MoveRow(
            tenant=watch.tenant.name,
            why=watch.why,
            migration_id=str(migration["id"]) if migration.get("id") else None,
            direction=migration.get("migration_type"),
            status=status,
            phase=migration.get("phase"),
            reason=migration.get("reason"),
            tenant_type=watch.tenant.tenant_type,
            freeze_ms=float(freeze_ms) if freeze_ms is not None else None,
            longest_request_ms=longest,
            seconds_to_flip=(flip_time - watch.caused_at) if flip_time is not None else None,
        )

    async def _tenant_row(self, tenant: DemoTenant) -> TenantRow:
        sent, failed = self.tally.tenant_counts(tenant.key)
        row = TenantRow(
            tenant.key,
            tenant.name,
            tenant.subdomain,
            tenant.tenant_id,
            tenant.plan,
            tenant.tenant_type,
            tenant.database_name,
            sent,
            failed,
        )
        if not tenant.tenant_id:
            return row
        found = await self.client.get_tenant(tenant.tenant_id)
        if found.ok:
            row.plan = str(found.body.get("plan"))
            row.tenant_type = tenant.tenant_type = str(found.body.get("tenant_type"))
            row.database_name = found.body.get("database_name")
        usage = await self.client.usage(tenant.tenant_id)
        if usage.ok and isinstance(usage.body, Mapping):
            row.usage_requests = int(usage.body.get("monthly_requests", 0))
            row.usage_products = int(usage.body.get("product_count", 0))
            row.usage_orders = sum(int(d.get("orders_count", 0)) for d in usage.body.get("daily", []))
            row.thresholds = [
                str(t.get("metric"))
                for t in usage.body.get("thresholds_crossed", [])
                if isinstance(t, Mapping)
            ]
        return row

    async def _summary(self) -> Summary:
        self.board.step = "summary"
        if self.scenario.usage_settle > 0 and any(t.tenant_id for t in self.tenants):
            # usage counts requests in 1 s windows sent through Kafka: a moment for the last ones.
            await self.pause(self.scenario.usage_settle)
        for watch in self.moves:
            await self._poll(watch)  # the final state of each move
        rows = [await self._tenant_row(t) for t in self.tenants]
        advisor = await self._advisor() if any(t.tenant_id for t in self.tenants) else AdvisorView()
        pushed = self.tenant("pushed")
        # The summary's own look-ups are counted too: every request the demo sent.
        return Summary(
            mode=self.scenario.mode,
            seconds=time.monotonic() - self.started,
            sent=self.tally.sent,
            failed=self.tally.failed,
            by_kind=self.tally.by_kind(),
            failures_by_outcome=self.tally.failures_by_outcome(),
            failure_details=list(self.tally.failure_details),
            traffic_rate=self.load.achieved_rate(),
            target_rate=self.load.target_rate(),
            tenants=rows,
            moves=[self._move_row(w) for w in self.moves],
            advisor=advisor,
            pushed=pushed.name,
            pushed_dedicated=pushed.tenant_type == "dedicated",
            warnings=list(self.warnings),
        )


async def run_demo(
    urls: Mapping[str, str],
    scenario: Scenario,
    display_factory: Callable[[Board], Display],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Summary:
    demo = Demo(urls, scenario, display_factory, transport=transport)
    return await demo.run()


__all__ = ["Demo", "ScenarioAborted", "describe_progress", "run_demo"]
