"""The migrator's Prometheus metrics. No label takes a tenant or migration id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MIGRATIONS = Counter("migrator_migrations_total", "Migrations finished, by outcome", ["status"])
ACTIVE = Gauge("migrator_migrations_running", "Migrations this process runs now, by phase", ["phase"])
PHASE_SECONDS = Histogram(
    "migrator_phase_duration_seconds",
    "Time a migration spent in each phase (one run of it)",
    ["phase"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
ROWS_COPIED = Counter("migrator_rows_copied_total", "Rows copied into targets (copy and catch-up)", ["phase"])
CATCH_UP_LAG = Gauge("migrator_catch_up_lag_rows", "Captured changes not yet applied (the last one measured)")
FREEZE_SECONDS = Histogram(
    "migrator_freeze_seconds",
    "How long a cutover held the tenant's writes (successful cutovers)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
VERIFY_MISMATCHES = Counter(
    "migrator_verify_mismatches_total",
    "Chunks or keys whose source and target differed, by stage: copy (a chunk compared right after its "
    "copy), full, cutover (a key inside the freeze)",
    ["stage"],
)
CUTOVER_ABORTS = Counter(
    "migrator_cutover_aborts_total", "Cutover attempts released without a flip", ["reason"]
)
