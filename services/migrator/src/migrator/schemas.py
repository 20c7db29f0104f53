"""Request and response models of the migrator API (CONTRACT.md §3, migrator)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from servicekit.validation import Text

from migrator.domain import Direction

Reason = Annotated[Text, Field(min_length=1, max_length=1000)]


class MigrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: uuid.UUID
    # Default: away from where the tenant is now.
    direction: Direction | None = None
    reason: Reason | None = None


class MigrationOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    migration_type: str
    status: Literal["pending", "in_progress", "completed", "failed", "cancelled"]
    phase: str
    from_state: dict[str, Any]
    to_state: dict[str, Any]
    reason: str | None
    # The automatic placement's scheduling: the trigger (None: asked for by hand), its priority, not
    # before when (a retry's backoff, a cool-down), the how-manieth try of the trigger.
    trigger: str | None
    priority: int
    not_before: datetime | None
    attempt: int
    progress: dict[str, Any]
    cutover_attempts: int
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    error_message: str | None


class MigrationPage(BaseModel):
    items: list[MigrationOut]
    next_cursor: str | None


class DecisionOut(BaseModel):
    """One decision of the automatic placement on a trigger (placement_decisions)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    trigger: str
    event_id: uuid.UUID
    event_type: str
    action: Literal["move", "recommend", "alert"]
    outcome: Literal["queued", "skipped", "recommended", "alerted"]
    reason: str
    priority: int
    migration_id: uuid.UUID | None
    created_at: datetime


class DecisionPage(BaseModel):
    items: list[DecisionOut]
    next_cursor: str | None
