"""tenantdb's settings: environment variables of the same names (CONTRACT.md §1)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


def _postgres_url(value: str) -> str:
    url = make_url(value)
    if url.get_backend_name() != "postgresql":
        raise ValueError("must be a postgresql:// URL")
    return value


class TenantDBSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    platform_database_url: str
    shared_database_url: str
    # How to reach a tenant's dedicated database. Placeholders: {database}, {role}, {password}.
    # Default: the shared database's server, logging in as the database's own role.
    dedicated_database_url_template: str | None = None
    # Each dedicated database has its own role whose password is HMAC(secret, database name):
    # nothing per tenant to store, and one tenant's engine cannot log into another's database.
    dedicated_password_secret: SecretStr | None = None

    # No overflow by default: SQLAlchemy closes overflow connections as soon as they are returned, so
    # under a burst every extra request would pay a new connection (TCP + SCRAM + type introspection,
    # measured at ~4x the cost of the request itself). Requests wait for a pooled connection instead.
    shared_pool_size: int = Field(10, ge=1)
    shared_max_overflow: int = Field(0, ge=0)
    dedicated_pool_size: int = Field(2, ge=1)
    dedicated_max_overflow: int = Field(0, ge=0)
    max_dedicated_engines: int = Field(32, ge=1)
    pool_recycle_seconds: int = Field(1800, ge=1)
    # How long a unit of work waits for a pooled connection before failing with the retryable
    # PoolExhausted (HTTP 503 + Retry-After). SQLAlchemy's 30 s default would hold a request far
    # past any client's patience; a saturated process should shed load instead.
    pool_timeout_seconds: float = Field(3.0, gt=0)

    directory_ttl_seconds: float = Field(30.0, gt=0)
    # Unknown tenant ids are remembered as unknown this long (a flood of random ids costs no query
    # each); a tenant created meanwhile is found after at most this long, or at once when its
    # tenant.created event reaches the process. At most `directory_negative_entries` are kept.
    directory_negative_ttl_seconds: float = Field(3.0, ge=0)
    directory_negative_entries: int = Field(10_000, ge=0)
    # How long a write waits for a cutover before failing with the retryable TenantMoving. The wait
    # holds no connection: the fence lock is probed, and on a busy lock the connection goes back to
    # the pool while the write backs off (unit_of_work.py).
    write_wait_seconds: float = Field(5.0, gt=0)

    # Read-only units of work skip the fence check by default: it is a function call in the database
    # (~0.1 ms, most of what tenantdb would add to a point read). A read through a stale route then
    # sees the old placement, frozen at cutover (writes there are fenced), until the directory entry
    # is invalidated (event: under a second; else the TTL). True: reads are fenced and rerouted too.
    fence_reads: bool = False

    # Shown in pg_stat_activity for every connection tenantdb opens (which process holds what): the
    # service's name; background work gets `<service>:<worker>` (TenantDB.for_worker).
    application_name: str = "tenantdb"

    # Behind PgBouncer in transaction pooling: no statement cache, unique statement names, no
    # client-side pool (PgBouncer is the pool).
    pgbouncer: bool = False

    @field_validator("platform_database_url", "shared_database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _postgres_url(value)


@lru_cache
def get_settings() -> TenantDBSettings:
    return TenantDBSettings()  # filled from the environment
