"""The platform database: tenant registry, subscription plans, usage metrics, migrations.

Differences from the seed, each for a reason:
- timestamps are `timestamptz` (the seed's `timestamp` loses the zone across regions);
- `subscription_plans.name` is unique and `tenants.plan` references it (a tenant on an unknown plan
  is a bug the database can refuse);
- `tenants.compliance_isolation` (the contract's PATCH field) and CHECKs on the enumerations;
- `tenant_migrations.phase`/`updated_at` (the contract's migration resource) and at most one active
  migration per tenant, enforced by a partial unique index.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

PLANS: Final = ("basic", "professional", "enterprise")
TENANT_STATUSES: Final = ("active", "suspended", "deleted")
TENANT_TYPES: Final = ("shared", "dedicated")
MIGRATION_STATUSES: Final = ("pending", "in_progress", "completed", "failed", "cancelled")
ACTIVE_MIGRATION_STATUSES: Final = ("pending", "in_progress")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


metadata = MetaData()

subscription_plans = Table(
    "subscription_plans",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("name", String(100), nullable=False, unique=True),
    Column("price", Numeric(10, 2), nullable=False),
    Column("features", JSONB, nullable=False),
    Column("limits", JSONB, nullable=False),
    Column("database_type", String(20), nullable=False, server_default=text("'shared'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint(_in("database_type", TENANT_TYPES), name="subscription_plans_database_type_check"),
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("name", String(255), nullable=False),
    Column("subdomain", String(50), nullable=False, unique=True),
    Column("custom_domain", String(255)),
    Column(
        "plan",
        String(20),
        ForeignKey("subscription_plans.name", name="tenants_plan_fkey"),
        nullable=False,
        server_default=text("'basic'"),
    ),
    Column("status", String(20), nullable=False, server_default=text("'active'")),
    Column("tenant_type", String(20), nullable=False, server_default=text("'shared'")),
    Column("database_name", String(100)),
    Column("product_count", Integer, nullable=False, server_default=text("0")),
    Column("monthly_requests", Integer, nullable=False, server_default=text("0")),
    Column("placement_epoch", BigInteger, nullable=False, server_default=text("1")),
    Column("compliance_isolation", Boolean, nullable=False, server_default=text("false")),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("deleted_at", DateTime(timezone=True)),
    CheckConstraint(_in("status", TENANT_STATUSES), name="tenants_status_check"),
    CheckConstraint(_in("tenant_type", TENANT_TYPES), name="tenants_tenant_type_check"),
    CheckConstraint(
        "(tenant_type = 'shared') OR (database_name IS NOT NULL)", name="tenants_dedicated_has_database_check"
    ),
    Index("idx_tenants_custom_domain", text("lower(custom_domain)"), unique=True),
    Index("idx_tenants_plan", "plan"),
    Index("idx_tenants_tenant_type", "tenant_type"),
    Index("idx_tenants_status", "status"),
)

tenant_usage_metrics = Table(
    "tenant_usage_metrics",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column(
        "tenant_id",
        UUID(as_uuid=True),
        ForeignKey("tenants.id", name="tenant_usage_metrics_tenant_id_fkey"),
        nullable=False,
    ),
    Column("metric_date", Date, nullable=False),
    Column("requests_count", Integer, nullable=False, server_default=text("0")),
    Column("bandwidth_used_gb", Numeric(10, 3), nullable=False, server_default=text("0")),
    Column("storage_used_gb", Numeric(10, 3), nullable=False, server_default=text("0")),
    Column("products_count", Integer, nullable=False, server_default=text("0")),
    Column("orders_count", Integer, nullable=False, server_default=text("0")),
    Column("active_users", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    UniqueConstraint("tenant_id", "metric_date", name="tenant_usage_metrics_tenant_id_metric_date_key"),
    Index("idx_usage_metrics_tenant_date", "tenant_id", text("metric_date DESC")),
)

tenant_migrations = Table(
    "tenant_migrations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column(
        "tenant_id",
        UUID(as_uuid=True),
        ForeignKey("tenants.id", name="tenant_migrations_tenant_id_fkey"),
        nullable=False,
    ),
    Column("migration_type", String(50), nullable=False),
    Column("from_state", JSONB, nullable=False),
    Column("to_state", JSONB, nullable=False),
    Column("status", String(20), nullable=False, server_default=text("'pending'")),
    Column("phase", String(40), nullable=False, server_default=text("'pending'")),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("completed_at", DateTime(timezone=True)),
    Column("error_message", Text),
    Column("rollback_data", JSONB),
    # platform_0006_migrator: why it was asked for, how far each phase got (rows copied per table,
    # the last key copied, catch-up lag, verification results), and how often cutover was retried.
    Column("reason", Text),
    Column("progress", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("cutover_attempts", Integer, nullable=False, server_default=text("0")),
    # platform_0008_placement: the scheduling of automatic moves. `trigger` names what asked for the
    # move (NULL: a manual request, started at once); automatic ones wait for a slot under the
    # concurrency limit, highest `priority` first, never before `not_before` (a retry's backoff, a
    # cool-down); `attempt` counts the tries of the same trigger.
    Column("trigger", String(40)),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("not_before", DateTime(timezone=True)),
    Column("attempt", Integer, nullable=False, server_default=text("1")),
    CheckConstraint(_in("status", MIGRATION_STATUSES), name="tenant_migrations_status_check"),
    Index("idx_migrations_tenant_id", "tenant_id", text("started_at DESC")),
    Index(
        "idx_migrations_one_active_per_tenant",
        "tenant_id",
        unique=True,
        postgresql_where=text(_in("status", ACTIVE_MIGRATION_STATUSES)),
    ),
)

PLATFORM_TABLES: Final = ("subscription_plans", "tenants", "tenant_usage_metrics", "tenant_migrations")

# The seed's INSERT, value for value (database-design.md, "Insert default plans").
PLAN_SEED: Final[tuple[dict[str, Any], ...]] = (
    {
        "name": "basic",
        "price": Decimal("29.00"),
        "features": ["basic_analytics", "email_support", "standard_templates", "ssl_certificate"],
        "limits": {
            "max_products": 1000,
            "max_requests_per_month": 10000,
            "max_storage_gb": 5,
            "max_bandwidth_gb": 50,
            "support_response_hours": 48,
        },
        "database_type": "shared",
    },
    {
        "name": "professional",
        "price": Decimal("79.00"),
        "features": [
            "basic_analytics",
            "advanced_analytics",
            "priority_support",
            "custom_domain",
            "advanced_templates",
            "email_marketing",
            "inventory_management",
        ],
        "limits": {
            "max_products": 10000,
            "max_requests_per_month": 100000,
            "max_storage_gb": 50,
            "max_bandwidth_gb": 500,
            "support_response_hours": 24,
        },
        "database_type": "shared",
    },
    {
        "name": "enterprise",
        "price": Decimal("299.00"),
        "features": [
            "all_features",
            "dedicated_database",
            "api_access",
            "sla_support",
            "white_labeling",
            "advanced_integrations",
            "custom_development",
            "priority_onboarding",
        ],
        "limits": {
            "max_products": -1,
            "max_requests_per_month": -1,
            "max_storage_gb": -1,
            "max_bandwidth_gb": -1,
            "support_response_hours": 4,
            "sla_uptime_percent": 99.9,
        },
        "database_type": "dedicated",
    },
)
