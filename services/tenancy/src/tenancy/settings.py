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
