"""The catalog's settings: environment variables of the same names (CONTRACT.md §1), e.g.
PLATFORM_DATABASE_URL, SHARED_DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, DEDICATED_PASSWORD_SECRET, PORT.

No prefix: the contract names the variables, and every service reads the same ones. tenantdb's own
tuning (pool sizes, DIRECTORY_TTL_SECONDS, PGBOUNCER, ...) is read by TenantDBSettings from the same
environment."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from servicekit.settings import ServiceSettings
from tenantdb import TenantDBSettings


class CatalogSettings(ServiceSettings):
    service_name: str = "catalog"
    port: int = 8102

    def tenantdb_settings(self) -> TenantDBSettings:
        values: dict[str, Any] = {
            "platform_database_url": self.platform_database_url,
            "shared_database_url": self.shared_database_url,
            "dedicated_password_secret": self.dedicated_password_secret,
            "dedicated_database_url_template": self.dedicated_database_url_template,
            "application_name": self.service_name,
        }
        # Unset ones are left to TenantDBSettings, which reads the environment for them.
        return TenantDBSettings(**{k: v for k, v in values.items() if v is not None})


@lru_cache
def get_settings() -> CatalogSettings:
    return CatalogSettings()  # filled from the environment
