"""The orders service's settings: servicekit's common ones (environment variables of the same names,
CONTRACT.md §1) with the orders' name and port, and its own consumer group."""

from __future__ import annotations

from functools import lru_cache

from servicekit.settings import ServiceSettings


class OrdersSettings(ServiceSettings):
    service_name: str = "orders"
    port: int = 8103

    # The consumer group reading catalog.products.v1 into the `order_products` read model.
    products_group_id: str = "orders.products"


@lru_cache
def get_settings() -> OrdersSettings:
    return OrdersSettings()  # filled from the environment
