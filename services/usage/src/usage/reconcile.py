"""Reconciliation: every `RECONCILE_INTERVAL_SECONDS`, each tenant's `product_count` against its real
product count, and its storage, read through tenantdb on whichever placement the tenant lives (so
a tenant moved between placements keeps its counts: they live in the platform database, and the
real count follows the tenant).

Drift. The counters trail the catalog by the consumer's lag, so a difference seen once may be events
in flight. A tenant's count is corrected only when the same difference is seen in two consecutive
rounds while this process's consumer had caught up with the products topic; every difference is a
log line and counted in `usage_reconcile_product_drift_total` when corrected.

Storage (`storage_used_gb` of today's daily row; the `storage_gb` threshold):
- dedicated tenant: `pg_database_size(current_database())` on its own database (exact, what the
  server allocated, indexes and free space included);
- shared tenant: for each tenant table, the tenant's rows / the table's rows * the table's total
  size (`pg_total_relation_size`: heap, indexes, TOAST; orders summed over its partitions), the
  table's rows the planner's estimate (`reltuples / relpages` x current pages), read once per round.
  The tenant's rows are counted under RLS through the tenant's own index (`idx_*_tenant_*`), so a
  tenant costs its own row count, never a scan of the shared database.
  The error: rows are assumed the average width of their table (a tenant with large
  JSON attributes or descriptions is under-estimated, one with small rows over-estimated, each by the
  ratio of its mean row width to the table's), bloat and free space are spread evenly over tenants,
  and the rows' density is the last ANALYZE's (scaled to the table's current pages; a tenant's
  share is capped at the whole table while statistics lag behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy import text
from tenantdb import TenantDB

from usage.metrics import RECONCILE_DRIFT, RECONCILE_DRIFTING, RECONCILE_ROUNDS
from usage.usecases import UsageService

log = structlog.get_logger("usage.reconcile")

GIB: Final = 1024**3
# Tenant tables of the shared database (tenantschema), with their soft-deleted rows: they take space.
SHARED_TABLES: Final = ("products", "product_categories", "customers", "orders")
_PAGE = 200
# Under RLS: the tenant's rows only, through its tenant_id index.
_COUNT_ROWS: Final = {table: text(f"SELECT count(*) FROM {table}") for table in SHARED_TABLES}  # noqa: S608


# A table's (or, for orders, its partitions') rows and bytes. Rows as the planner estimates them:
# the density of the last ANALYZE (reltuples / relpages) times the pages the table has now, so a
# table grown since its last ANALYZE is not under-counted (its tenants' shares over-estimated).
_TABLE_SIZE: Final = text(
    "SELECT COALESCE(sum(CASE WHEN c.relpages > 0 AND c.reltuples >= 0 "
    "THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::float8) "
    "ELSE GREATEST(c.reltuples, 0) END), 0) AS rows, "
    "COALESCE(sum(pg_total_relation_size(c.oid)), 0) AS bytes FROM pg_class AS c "
    "WHERE (c.oid = CAST(:table AS regclass) AND c.relkind = 'r') "
    "OR c.oid IN (SELECT relid FROM pg_partition_tree(CAST(:table AS regclass)) WHERE isleaf)"
)


@dataclass(frozen=True)
class TableSize:
    rows: float
    bytes: int


async def shared_table_sizes(tdb: TenantDB) -> dict[str, TableSize]:
    sizes: dict[str, TableSize] = {}
    async with tdb.shared_engine.connect() as connection:
        for table in SHARED_TABLES:
            row = (await connection.execute(_TABLE_SIZE, {"table": table})).one()
            sizes[table] = TableSize(float(row.rows), int(row.bytes))
    return sizes


def shared_estimate_gb(counts: dict[str, int], sizes: dict[str, TableSize]) -> float:
    """The tenant's share of each table's bytes by its share of the table's rows."""
    total = 0.0
    for table, count in counts.items():
        size = sizes.get(table)
        if size is None or count <= 0:
            continue
        # reltuples lags behind inserts; a tenant never owns more than the whole table.
        share = min(1.0, count / max(size.rows, float(count)))
        total += share * size.bytes
    return total / GIB


class Reconciler:
    def __init__(
        self,
        service: UsageService,
        tdb: TenantDB,
        *,
        interval_seconds: float,
        caught_up: Callable[[], bool],
        dedup_retention_days: int,
    ) -> None:
        self._service = service
        self._tdb = tdb
        self._interval = interval_seconds
        self._caught_up = caught_up
        self._retention = dedup_retention_days
        self._drift: dict[uuid.UUID, int] = {}  # last round's difference, per tenant
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._tdb.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.round()
                await self._service.prune_seen(retention_days=self._retention)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("reconciliation round failed", error=repr(error)[:500])

    async def round(self, only: set[uuid.UUID] | None = None) -> None:
        """Every tenant not deleted (`only`: just these, the others' last differences kept)."""
        sizes = await shared_table_sizes(self._tdb)
        drifting: dict[uuid.UUID, int] = {}
        after: uuid.UUID | None = None
        while True:
            page = await self._service.tenants_page(after, _PAGE)
            if not page:
                break
            for tenant in page:
                if only is not None and tenant.id not in only:
                    if tenant.id in self._drift:
                        drifting[tenant.id] = self._drift[tenant.id]
                    continue
                drift = await self._reconcile(tenant, sizes)
                if drift:
                    drifting[tenant.id] = drift
            after = page[-1].id
        self._drift = drifting
        RECONCILE_DRIFTING.set(len(drifting))
        RECONCILE_ROUNDS.inc()
        self.rounds += 1

    async def _reconcile(self, tenant: Any, sizes: dict[str, TableSize]) -> int:
        try:
            real, storage_gb = await self._measure(tenant, sizes)
        except Exception as error:
            log.warning("tenant not measured", tenant_id=str(tenant.id), error=repr(error)[:300])
            return self._drift.get(tenant.id, 0)
        drift = real - tenant.product_count
        correction = 0
        if drift:
            stable = self._drift.get(tenant.id) == drift
            log.warning(
                "product_count drift",
                tenant_id=str(tenant.id),
                counted=tenant.product_count,
                real=real,
                drift=drift,
                correcting=stable and self._caught_up(),
            )
            if stable and self._caught_up():
                correction = drift
                RECONCILE_DRIFT.inc(abs(drift))
        await self._service.reconcile_tenant(tenant.id, product_correction=correction, storage_gb=storage_gb)
        return 0 if correction else drift

    async def _measure(self, tenant: Any, sizes: dict[str, TableSize]) -> tuple[int, float]:
        async with self._tdb.unit_of_work(tenant.id, readonly=True, allow_suspended=True) as uow:
            connection = uow.connection
            real = int(
                (
                    await connection.execute(text("SELECT count(*) FROM products WHERE deleted_at IS NULL"))
                ).scalar_one()
            )
            if tenant.tenant_type == "dedicated":
                size = (
                    await connection.execute(text("SELECT pg_database_size(current_database())"))
                ).scalar_one()
                return real, int(size) / GIB
            counts = {}
            for table, count_rows in _COUNT_ROWS.items():
                counts[table] = int((await connection.execute(count_rows)).scalar_one())
            return real, shared_estimate_gb(counts, sizes)
