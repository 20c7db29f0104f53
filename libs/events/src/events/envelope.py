"""The contract's event envelope (CONTRACT.md §4): one frozen type for every integration event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """What travels on every topic, keyed by `tenant_id`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: str = Field(min_length=1, max_length=100)
    tenant_id: uuid.UUID
    occurred_at: AwareDatetime = Field(default_factory=_now)
    schema_version: Literal[1] = SCHEMA_VERSION
    producer: str = Field(min_length=1, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)

    def key(self) -> bytes:
        """The Kafka message key: the tenant id, so a tenant's events stay ordered in one partition."""
        return str(self.tenant_id).encode()

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()
