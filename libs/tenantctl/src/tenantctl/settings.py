"""tenantctl reads the same environment variables as the services (CONTRACT.md §1)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class TenantctlSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    kafka_bootstrap_servers: str


class ServiceUrls(BaseSettings):
    """Where the services answer (stack.env / CONTRACT.md §1): the HTTP commands need no Kafka."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    tenancy_url: str = "http://127.0.0.1:8101"
    migrator_url: str = "http://127.0.0.1:8105"
