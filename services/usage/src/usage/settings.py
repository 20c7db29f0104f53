"""usage's settings: servicekit's common ones (environment variables of the same names, CONTRACT.md
§1) with usage's name and port, its consumer, the migration triggers and the reconciliation."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from servicekit.settings import TriggerSettings


class UsageSettings(TriggerSettings):
    service_name: str = "usage"
    port: int = 8104
    # The consumer group whose offsets usage stores with its counts (usage_offsets).
    usage_group_id: str = "usage"
    # At most this many records per batch (one transaction): a batch gathers what arrives while the
    # previous one commits, so it is this large only under a backlog.
    usage_batch_max_records: int = Field(default=50_000, ge=1, le=200_000)
    # How long the broker may wait to fill a fetch: a batch's latency floor when traffic is low.
    usage_fetch_wait_ms: int = Field(default=100, ge=0, le=10_000)
    # Reconciliation of product_count and storage through tenantdb; a round walks every tenant.
    reconcile_interval_seconds: float = Field(default=300.0, gt=0)
    reconcile_enabled: bool = True
    # Event ids are remembered this long for deduplication (usage_seen_events).
    dedup_retention_days: int = Field(default=35, ge=1)


@lru_cache
def get_settings() -> UsageSettings:
    return UsageSettings()  # from the environment
