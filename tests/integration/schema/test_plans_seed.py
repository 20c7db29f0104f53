"""The platform's plans are the seed's INSERT, field by field (database-design.md)."""

from __future__ import annotations

import json
from decimal import Decimal

import asyncpg

# Typed from the seed by hand, on purpose not imported from tenantschema: this checks the migration.
SEED = {
    "basic": (
        Decimal("29.00"),
        ["basic_analytics", "email_support", "standard_templates", "ssl_certificate"],
        {
            "max_products": 1000,
            "max_requests_per_month": 10000,
            "max_storage_gb": 5,
            "max_bandwidth_gb": 50,
            "support_response_hours": 48,
        },
        "shared",
    ),
    "professional": (
        Decimal("79.00"),
        [
            "basic_analytics",
            "advanced_analytics",
            "priority_support",
            "custom_domain",
            "advanced_templates",
            "email_marketing",
            "inventory_management",
        ],
        {
            "max_products": 10000,
            "max_requests_per_month": 100000,
            "max_storage_gb": 50,
            "max_bandwidth_gb": 500,
            "support_response_hours": 24,
        },
        "shared",
    ),
    "enterprise": (
        Decimal("299.00"),
        [
            "all_features",
            "dedicated_database",
            "api_access",
            "sla_support",
            "white_labeling",
            "advanced_integrations",
            "custom_development",
            "priority_onboarding",
        ],
        {
            "max_products": -1,
            "max_requests_per_month": -1,
            "max_storage_gb": -1,
            "max_bandwidth_gb": -1,
            "support_response_hours": 4,
            "sla_uptime_percent": 99.9,
        },
        "dedicated",
    ),
}


async def test_seeded_plans_equal_the_seed(platform_url: str) -> None:
    connection = await asyncpg.connect(platform_url)
    try:
        rows = await connection.fetch(
            "SELECT name, price, features::text, limits::text, database_type, id, created_at "
            "FROM subscription_plans"
        )
    finally:
        await connection.close()
    assert {row["name"] for row in rows} == set(SEED)
    for row in rows:
        price, features, limits, database_type = SEED[row["name"]]
        assert row["price"] == price
        assert json.loads(row["features"]) == features  # order kept: a JSON array
        assert json.loads(row["limits"]) == limits
        assert row["database_type"] == database_type
        assert row["id"] is not None
        assert row["created_at"] is not None
