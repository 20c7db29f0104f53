"""The usage service's own tables in the platform database (revision platform_0005_usage).

Kept in a MetaData of their own: platform_0001 creates `tenantschema.platform.metadata` as it is
today, so tables declared there would be created twice.

- `usage_offsets`: per consumer group and partition, the next offset to apply. Written in the same
  transaction as the counters a batch produced, so the counters and the position move together;
  the consumer seeks to it on every assignment (Kafka's committed offsets are not trusted).
- `usage_seen_events`: the event ids applied, for duplicates that arrive at another offset (a
  producer's resend after a timed-out publish, a replay). Pruned after `DEDUP_RETENTION_DAYS`;
  a BRIN index on the insertion time makes pruning cheap without a B-tree per insert.
- `usage_counter_marks` (revision platform_0010_usage_marks): per request counter and tenant, the
  highest `api.requests_counted` sequence applied. A counter makes a tenant's next event only after
  the previous one was acknowledged, so everything at or below the mark is a duplicate: one row per
  (counter, tenant), updated once per batch, instead of one `usage_seen_events` row per event.
- `usage_monthly`: the calendar-month request total per tenant (UTC), so `tenants.monthly_requests`
  and the monthly thresholds never sum a month of daily rows.
- `usage_thresholds`: one row per crossing under the unique key (tenant, metric, period); the
  crossing's event id is derived from that key, so a replay can never mint a second event.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from tenantschema.platform import tenants

metadata = MetaData()

usage_offsets = Table(
    "usage_offsets",
    metadata,
    Column("group_id", String(255), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("group_id", "topic", "partition", name="usage_offsets_pkey"),
)

usage_seen_events = Table(
    "usage_seen_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("idx_usage_seen_events_seen_at", "seen_at", postgresql_using="brin"),
)

usage_counter_marks = Table(
    "usage_counter_marks",
    metadata,
    Column("counter_id", UUID(as_uuid=True), nullable=False),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # No index on updated_at: updates stay HOT (PostgreSQL 15 gives up HOT for any index on a changed
    # column), and pruning scans a table of counters x tenants, not of events.
    PrimaryKeyConstraint("counter_id", "tenant_id", name="usage_counter_marks_pkey"),
)

usage_monthly = Table(
    "usage_monthly",
    metadata,
    Column(
        "tenant_id",
        UUID(as_uuid=True),
        ForeignKey(tenants.c.id, name="usage_monthly_tenant_id_fkey"),
        nullable=False,
    ),
    Column("month", Date, nullable=False),  # the first day of the month (UTC)
    Column("requests_count", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("tenant_id", "month", name="usage_monthly_pkey"),
    Index("idx_usage_monthly_month_requests", "month", text("requests_count DESC")),
)

usage_thresholds = Table(
    "usage_thresholds",
    metadata,
    Column(
        "tenant_id",
        UUID(as_uuid=True),
        ForeignKey(tenants.c.id, name="usage_thresholds_tenant_id_fkey"),
        nullable=False,
    ),
    Column("metric", String(64), nullable=False),
    Column("period", String(64), nullable=False),
    Column("value", Numeric(20, 3), nullable=False),
    Column("threshold", Numeric(20, 3), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("crossed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # Level metrics (products, storage, plan, compliance): set when the value fell back below.
    Column("resolved_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("tenant_id", "metric", "period", name="usage_thresholds_pkey"),
)

# Created by platform_0005_usage, in this order (that revision creates exactly these).
USAGE_TABLES: Final = ("usage_offsets", "usage_seen_events", "usage_monthly", "usage_thresholds")
