"""tenantdb's Prometheus metrics. No label takes a tenant id or anything else unbounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROUTED = Counter(
    "tenantdb_units_of_work_total", "Units of work opened, by placement and mode", ["placement", "mode"]
)
DIRECTORY_LOOKUPS = Counter("tenantdb_directory_lookups_total", "Directory cache lookups", ["result"])
DIRECTORY_INVALIDATIONS = Counter(
    "tenantdb_directory_invalidations_total", "Directory cache invalidations", ["reason"]
)
ACQUIRE_SECONDS = Histogram(
    "tenantdb_unit_of_work_acquire_seconds",
    "Time from asking for a unit of work to holding a connection inside its transaction",
    ["placement"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DEDICATED_ENGINES = Gauge(
    "tenantdb_dedicated_engines", "Open engines (connection pools) to dedicated databases"
)
FENCED = Counter(
    "tenantdb_fenced_total", "Units of work turned away from a fenced or moving placement", ["outcome"]
)
FENCED_WAIT_SECONDS = Histogram(
    "tenantdb_fenced_wait_seconds",
    "Time writes spent waiting for a cutover or rerouting after a fence",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
