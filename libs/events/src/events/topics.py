"""The contract's Kafka topics (CONTRACT.md §4). One place, so nobody spells a topic twice."""

from typing import Final

TENANTS: Final = "tenancy.tenants.v1"
PRODUCTS: Final = "catalog.products.v1"
ORDERS: Final = "orders.orders.v1"
REQUESTS: Final = "usage.requests.v1"
THRESHOLDS: Final = "usage.thresholds.v1"
MIGRATIONS: Final = "migrator.migrations.v1"

CONTRACT_TOPICS: Final[tuple[str, ...]] = (TENANTS, PRODUCTS, ORDERS, REQUESTS, THRESHOLDS, MIGRATIONS)

DLQ_SUFFIX: Final = ".dlq"
PARTITIONS: Final = 6


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return topic + DLQ_SUFFIX


def all_topics() -> tuple[str, ...]:
    """Every topic the platform needs, dead-letter topics included."""
    return CONTRACT_TOPICS + tuple(dlq(t) for t in CONTRACT_TOPICS)
