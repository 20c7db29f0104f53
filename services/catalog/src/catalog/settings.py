"""The catalog's settings: servicekit's common ones (environment variables of the same names,
CONTRACT.md §1) with the catalog's name and port."""

from __future__ import annotations

from functools import lru_cache

from servicekit.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    service_name: str = "catalog"
    port: int = 8102


@lru_cache
def get_settings() -> CatalogSettings:
    return CatalogSettings()  # filled from the environment
