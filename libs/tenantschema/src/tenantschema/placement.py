"""The automatic placement's record in the platform database (revision platform_0008_placement).

Kept in a MetaData of its own (as tenantschema.usage): platform_0001 creates
`tenantschema.platform.metadata` as it is today, so a table declared there would be created twice.

- `placement_decisions`: one row per decision the migrator took on a trigger (a threshold crossing,
  a plan change, a compliance flag, a retry after a failed move): the trigger, the action the decision
  matrix gave it, what came of it and why, in words, and the migration it queued. `event_id` is
  unique: the event the decision answered (a retry's is derived from the failed migration's id), so a
  redelivered or replayed event finds its decision taken and does nothing again. No foreign key to
  `tenants`: an event may name a tenant the directory does not know (that is a decision too).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text, text
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData()

PLACEMENT_ACTIONS: Final = ("move", "recommend", "alert")
PLACEMENT_OUTCOMES: Final = ("queued", "skipped", "recommended", "alerted")

placement_decisions = Table(
    "placement_decisions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("trigger", String(40), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("event_type", String(100), nullable=False),
    Column("action", String(20), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("migration_id", UUID(as_uuid=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("idx_placement_decisions_tenant", "tenant_id", text("created_at DESC"), text("id DESC")),
    Index("idx_placement_decisions_created", text("created_at DESC"), text("id DESC")),
)

PLACEMENT_TABLES: Final = ("placement_decisions",)
