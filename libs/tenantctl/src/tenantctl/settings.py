"""tenantctl reads the same environment variables as the services (CONTRACT.md §1)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class TenantctlSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    kafka_bootstrap_servers: str
