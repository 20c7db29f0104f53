"""tenancy's settings: servicekit's common ones (environment variables of the same names,
CONTRACT.md §1) with tenancy's name and port, and the domain tenants are served under."""

from __future__ import annotations

from functools import lru_cache

from servicekit.settings import ServiceSettings


class TenancySettings(ServiceSettings):
    service_name: str = "tenancy"
    port: int = 8101
    # Tenants are served at <subdomain>.<base_domain>; any other host is looked up as a custom domain.
    base_domain: str = "shop.localhost"


@lru_cache
def get_settings() -> TenancySettings:
    return TenancySettings()  # from the environment
