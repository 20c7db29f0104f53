"""`tenant.threshold_crossed` (usage.thresholds.v1): the metrics it names and the migration triggers
(CONTRACT.md §4 defaults). One place: usage decides the crossings, the migrator's decision matrix and
placement advisor act on them, and a metric spelled twice would be a trigger nobody acts on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The migration triggers.
PRODUCTS: Final = "products"
REQUESTS_PER_MONTH: Final = "requests_per_month"
STORAGE_GB: Final = "storage_gb"
PLAN_ENTERPRISE: Final = "plan_enterprise"
COMPLIANCE_ISOLATION: Final = "compliance_isolation"
# The plans' soft limits (subscription_plans.limits), distinct metrics.
PLAN_MAX_PRODUCTS: Final = "plan_max_products"
PLAN_MAX_REQUESTS: Final = "plan_max_requests_per_month"
PLAN_MAX_STORAGE_GB: Final = "plan_max_storage_gb"


@dataclass(frozen=True)
class Triggers:
    """The migration triggers' levels (configurable: TRIGGER_PRODUCTS, TRIGGER_REQUESTS_PER_MONTH,
    TRIGGER_STORAGE_GB, the same variables for usage and the migrator)."""

    products: int = 10_000
    requests_per_month: int = 100_000
    storage_gb: float = 10.0
