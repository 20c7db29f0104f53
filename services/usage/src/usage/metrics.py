"""usage's Prometheus metrics (no tenant label: thousands of tenants would make thousands of series).
Consumer lag is events.lag's `kafka_consumer_lag_messages{group,topic}`, shared by every service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "usage_events_consumed_total", "Events usage counted, by event type", ["event_type"]
)
SKIPPED = Counter(
    "usage_events_skipped_total",
    "Records not counted, by reason: below_offset (redelivered, already applied), duplicate (event id "
    "already counted), unknown_tenant (unknown to the platform or deleted), ignored (a type usage does "
    "not count), dead_lettered",
    ["reason"],
)
BATCH_SIZE = Histogram(
    "usage_batch_records",
    "Records per applied batch",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000),
)
BATCHES = Counter(
    "usage_batches_total",
    "Batches applied, by path: tally (every event fresh, applied as aggregated while parsed) or exact "
    "(some event may have been counted before: each decided on its own)",
    ["path"],
)
APPLY_SECONDS = Histogram(
    "usage_batch_apply_seconds",
    "Time to apply one batch (one transaction)",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
THRESHOLDS_EMITTED = Counter(
    "usage_thresholds_emitted_total", "tenant.threshold_crossed events recorded, by metric", ["metric"]
)
RECONCILE_DRIFT = Counter(
    "usage_reconcile_product_drift_total",
    "Products by which a tenant's product_count differed from its real count when corrected",
)
RECONCILE_DRIFTING = Gauge(
    "usage_reconcile_drifting_tenants",
    "Tenants whose product_count differed in the last reconciliation round",
)
RECONCILE_ROUNDS = Counter("usage_reconcile_rounds_total", "Reconciliation rounds completed")
