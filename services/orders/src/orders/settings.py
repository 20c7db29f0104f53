"""The orders service's settings: environment variables of the same names (CONTRACT.md §1).

One class serves both the service (ServiceSettings) and its tenant routing (TenantDBSettings), so
pool sizes and the directory TTL are configurable the same way as everything else.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict
from servicekit.settings import ServiceSettings
from tenantdb import TenantDBSettings


class OrdersSettings(ServiceSettings, TenantDBSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    service_name: str = "orders"
    port: int = 8103
    application_name: str = "orders"

    # The consumer group reading catalog.products.v1 into the `order_products` read model.
    products_group_id: str = "orders.products"


@lru_cache
def get_settings() -> OrdersSettings:
    return OrdersSettings()  # filled from the environment
