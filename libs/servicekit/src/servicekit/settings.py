"""Settings every service shares. A service's settings class adds only its own fields (and its name
and port defaults); tenantdb's settings are composed from these, never inherited.

Environment variables have the fields' names, without a prefix (CONTRACT.md §1: every setting is
overridable by a variable of the same name): PLATFORM_DATABASE_URL, PORT, OUTBOX_RELAY_ENABLED, ...
tenantdb's own tuning (SHARED_POOL_SIZE, DIRECTORY_TTL_SECONDS, FENCE_READS, PGBOUNCER, ...) is read
from the same environment by TenantDBSettings when `tenantdb_settings()` builds it.
"""

from __future__ import annotations

from typing import Any

from events.thresholds import Triggers
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from tenantdb import TenantDBSettings


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = 8100
    log_level: str = "INFO"

    platform_database_url: str
    shared_database_url: str
    kafka_bootstrap_servers: str
    dedicated_password_secret: SecretStr | None = None
    dedicated_database_url_template: str | None = None
    # The outbox relay's own role (the only one allowed to claim and settle outbox rows); its
    # dedicated URLs are the dedicated ones with this user and password (servicekit.relay).
    relay_platform_database_url: str | None = None
    relay_shared_database_url: str | None = None

    # Requests with a larger body are refused with 413 before they are read.
    max_body_bytes: int = 2 * 1024 * 1024
    # The outbox relay: off only to test what happens when a process dies before it publishes.
    outbox_relay_enabled: bool = True
    # A commit wakes the relay for its own database at once; every database is swept this often for
    # what a crashed process or another writer left behind.
    outbox_sweep_interval_seconds: float = 1.0
    # The polled database (shared, or platform for tenancy) is claimed from at least this often when
    # idle: what an event committed by another process waits at most after a quiet spell before its
    # first claim (an idle claim only reads). Under load the relay claims again as soon as it settled.
    outbox_idle_poll_seconds: float = 0.05
    # A dedicated database nobody committed to is swept for leftovers about this often, by one relay
    # of all (the platform database hands the round out).
    outbox_leftover_interval_seconds: float = 30.0
    # How often per-tenant request counts are published (usage.requests.v1).
    request_count_window_seconds: float = 1.0

    @field_validator(
        "platform_database_url",
        "shared_database_url",
        "relay_platform_database_url",
        "relay_shared_database_url",
    )
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        if value is not None and make_url(value).get_backend_name() != "postgresql":
            raise ValueError("must be a postgresql:// URL")
        return value

    def tenantdb_settings(self, **overrides: Any) -> TenantDBSettings:
        """tenantdb's settings: the URLs and secret from here, connections named after the service,
        the rest (pools, TTLs) from the environment; `overrides` win (tests)."""
        values: dict[str, Any] = {
            "platform_database_url": self.platform_database_url,
            "shared_database_url": self.shared_database_url,
            "dedicated_password_secret": self.dedicated_password_secret,
            "dedicated_database_url_template": self.dedicated_database_url_template,
            "application_name": self.service_name,
        }
        # Unset ones are left to TenantDBSettings, which reads the environment for them.
        return TenantDBSettings(**({k: v for k, v in values.items() if v is not None} | overrides))


class TriggerSettings(ServiceSettings):
    """ServiceSettings plus the migration triggers (CONTRACT.md §4 defaults), for the services that
    act on them (usage decides the crossings, the migrator's advisor plans with them): the same
    environment variables configure both."""

    trigger_products: int = Field(default=10_000, ge=1)
    trigger_requests_per_month: int = Field(default=100_000, ge=1)
    trigger_storage_gb: float = Field(default=10.0, gt=0)

    def migration_triggers(self) -> Triggers:
        return Triggers(
            products=self.trigger_products,
            requests_per_month=self.trigger_requests_per_month,
            storage_gb=self.trigger_storage_gb,
        )
