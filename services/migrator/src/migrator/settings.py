"""The migrator's settings: servicekit's common ones (environment variables of the same names,
CONTRACT.md §1) with the migrator's name and port, the two elevated URLs its moves need, and the
knobs of the phases.

Credentials (least privilege, README.md "Credentials"): the service's own role `migrator_service`
(PLATFORM_DATABASE_URL) reads the directory, writes `tenant_migrations`, the placement columns and the
platform outbox, nothing else. Moving data needs more, and only the runner uses it:
- OWNER_DATABASE_URL (the schema owner, `platform_owner`): the capture triggers and change tables, the
  fences and the cutover's exclusive lock, reading the tenant's rows under its RLS context;
- ADMIN_DATABASE_URL (a superuser, or a role with CREATEDB + CREATEROLE for provisioning): CREATE
  DATABASE/ROLE, and the writes into a target and the source's cleanup, which run with
  `session_replication_role = replica` (no foreign-key or guard triggers while rows arrive in key
  order rather than reference order; a superuser-only setting).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from servicekit.settings import TriggerSettings

from migrator import placement, triggers


class PlacementSettings(TriggerSettings):
    """The placement advisor (`GET /v1/placement/plan`; migrator/placement.py says how each is used);
    its levels are the migration triggers, configured by the same variables as usage's."""

    # The seed's "Cost-Benefit Analysis": one shared instance ($200 a month) for 95 tenants, $50 a
    # month per dedicated database; the overhead prices the connections each dedicated database adds.
    placement_shared_instance_monthly_cost: Decimal = Field(default=Decimal("200"), ge=0, decimal_places=2)
    placement_shared_instance_capacity_tenants: int = Field(default=95, ge=1)
    placement_shared_instance_capacity_gb: float | None = Field(default=None, gt=0)
    placement_dedicated_monthly_cost: Decimal = Field(default=Decimal("50"), ge=0, decimal_places=2)
    placement_dedicated_overhead_monthly_cost: Decimal = Field(default=Decimal("0"), ge=0, decimal_places=2)
    # Demote only after this many days below this fraction of every trigger (the hysteresis).
    placement_demote_after_days: int = Field(default=30, ge=1, le=365)
    placement_demote_below_fraction: float = Field(default=0.5, gt=0, le=1)

    def placement_policy(self) -> placement.DemotePolicy:
        return placement.DemotePolicy(
            after_days=self.placement_demote_after_days, below_fraction=self.placement_demote_below_fraction
        )

    def placement_costs(self) -> placement.CostModel:
        return placement.CostModel(
            shared_instance_monthly_cost=self.placement_shared_instance_monthly_cost,
            shared_instance_capacity_tenants=self.placement_shared_instance_capacity_tenants,
            shared_instance_capacity_gb=self.placement_shared_instance_capacity_gb,
            dedicated_monthly_cost=self.placement_dedicated_monthly_cost,
            dedicated_overhead_monthly_cost=self.placement_dedicated_overhead_monthly_cost,
        )


class MigratorSettings(PlacementSettings):
    service_name: str = "migrator"
    port: int = 8105

    admin_database_url: str
    owner_database_url: str
    # The dedicated databases' cluster, when it is another server than the shared one (default: the
    # same URLs as above).
    dedicated_admin_database_url: str | None = None
    dedicated_owner_database_url: str | None = None
    # Dedicated roles' passwords derive from it (tenantdb): the provisioner sets them.
    dedicated_password_secret: SecretStr | None = None

    # Off: the API records requests and nothing moves (tests of the API alone; a second replica
    # would be harmless too: each migration is run under a platform advisory lock).
    migrator_runner_enabled: bool = True
    migrator_poll_interval_seconds: float = Field(0.5, gt=0)

    # ---- automatic placement (triggers.py; README.md "Automatic placement") ----
    # Off: no trigger is consumed (the stack's own migrator under `make test`, so tests' threshold
    # events move nobody behind the tests' backs); queued moves still run.
    placement_auto_enabled: bool = True
    # The consumer groups of the trigger topics (`<id>.thresholds`, `<id>.tenants`), and where a
    # new group starts: "earliest" (a first deployment acts on crossings it has not seen; event ids
    # already decided are not decided again).
    placement_group_id: str = "migrator.placement"
    placement_offset_reset: Literal["earliest", "latest"] = "earliest"
    # The decision matrix: overrides of triggers.DEFAULT_MATRIX, as JSON:
    # PLACEMENT_MATRIX='{"plan_max_products": {"action": "recommend"}, "products": {"priority": 150}}'
    placement_matrix: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Automatic moves running at once (manual requests start at once but take a slot; a move waiting
    # for its cleanup does not); optional UTC window "22:00-06:00" outside which queued moves wait
    # (compliance does not); retry after a failed automatic move: backoff base * 2^(attempt-1),
    # capped, at most max attempts; cool-down after a completed move before the tenant moves again.
    placement_max_concurrent_moves: int = Field(1, ge=1)
    placement_allowed_hours: str | None = None
    placement_retry_backoff_seconds: float = Field(300.0, ge=0)
    placement_retry_backoff_max_seconds: float = Field(6 * 3600.0, ge=0)
    placement_max_attempts: int = Field(5, ge=1)
    placement_cool_down_seconds: float = Field(7 * 24 * 3600.0, ge=0)

    # Rows per COPY chunk, per catch-up batch, per verify chunk.
    migrator_copy_chunk_rows: int = Field(20_000, ge=1)
    # The copy's progress (where a restart resumes, what `--wait` shows) is recorded at most this
    # often, and whenever a request or cancel reached this process: a commit per chunk was a tenth of
    # a small move, and a restart repeats at most this much copying (a repeated chunk is harmless).
    migrator_copy_progress_seconds: float = Field(0.5, ge=0)
    migrator_catch_up_batch_rows: int = Field(2000, ge=1)
    migrator_verify_chunk_rows: int = Field(5000, ge=1)
    # Catch-up ends when fewer changes than this are waiting (the rest is applied inside the freeze).
    migrator_catch_up_target_lag: int = Field(200, ge=0)
    # Cutover: how long the hold may wait for in-flight writes (the drain); past it the tenant is
    # released and the cutover retried after `migrator_cutover_retry_seconds`.
    migrator_drain_timeout_seconds: float = Field(2.0, gt=0)
    migrator_cutover_retry_seconds: float = Field(1.0, gt=0)
    migrator_max_cutover_attempts: int = Field(30, ge=1)
    # Inside the freeze: how long the source's unsent outbox rows of the tenant may take to go out.
    migrator_outbox_drain_seconds: float = Field(2.0, gt=0)
    # The source is deleted no sooner than this after the flip: directory TTL (30 s) plus a margin,
    # since reads may follow a stale route until then (libs/tenantdb/README.md).
    migrator_cleanup_delay_seconds: float = Field(35.0, ge=0)

    @field_validator("placement_matrix")
    @classmethod
    def _known_triggers(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        triggers.matrix(value)  # raises on an unknown trigger, action or key
        return value

    @field_validator("placement_allowed_hours")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            triggers.AllowedHours.parse(value)
            return value
        return None

    @property
    def decision_matrix(self) -> dict[str, triggers.Rule]:
        return triggers.matrix(self.placement_matrix)

    @property
    def allowed_hours(self) -> triggers.AllowedHours | None:
        window = self.placement_allowed_hours
        return triggers.AllowedHours.parse(window) if window else None


@lru_cache
def get_settings() -> MigratorSettings:
    return MigratorSettings()  # filled from the environment
