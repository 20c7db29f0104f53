"""The rules of a move, no I/O: directions, phases, the objects a migration names after itself, and
the events it publishes on migrator.migrations.v1."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from events.envelope import Envelope
from events.models import PlacementChanged
from servicekit.errors import Conflict, Invalid

Direction = Literal["to_dedicated", "to_shared"]
Variant = Literal["shared", "dedicated"]

PRODUCER: Final = "migrator"
MIGRATION_TYPES: Final[dict[Direction, str]] = {
    "to_dedicated": "shared_to_dedicated",
    "to_shared": "dedicated_to_shared",
}
DIRECTIONS: Final[dict[str, Direction]] = {value: key for key, value in MIGRATION_TYPES.items()}

PHASES: Final = ("provision", "capture", "copy", "catch_up", "verify", "cutover", "cleanup", "done")
# Until the cutover begins a move can be cancelled (and a failure rolled back); from then on it can
# only be finished: the directory may already point at the target.
CANCELLABLE_PHASES: Final = ("provision", "capture", "copy", "catch_up", "verify")
ACTIVE_STATUSES: Final = ("pending", "in_progress")


def direction_for(current_type: str, asked: Direction | None) -> Direction:
    """The direction of a new move: the one asked for, which must leave the current placement."""
    natural: Direction = "to_dedicated" if current_type == "shared" else "to_shared"
    if asked is None:
        return natural
    if asked != natural:
        raise Conflict(
            f"the tenant is already {'dedicated' if asked == 'to_dedicated' else 'shared'}",
            field="direction",
        )
    return asked


def check_movable(status: str) -> None:
    if status == "deleted":
        raise Invalid.of_field("tenant_id", "the tenant is deleted", "tenant_deleted")


def target_variant(direction: Direction) -> Variant:
    return "dedicated" if direction == "to_dedicated" else "shared"


def source_variant(direction: Direction) -> Variant:
    return "shared" if direction == "to_dedicated" else "dedicated"


@dataclass(frozen=True)
class ObjectNames:
    """Every object a migration creates in a database is named after its id (reconciliation finds
    orphans by the prefix)."""

    migration_id: uuid.UUID

    @property
    def prefix(self) -> str:
        return f"mig_{self.migration_id.hex}"

    @property
    def changes(self) -> str:
        return f"{self.prefix}_changes"

    @property
    def capture_function(self) -> str:
        return f"{self.prefix}_capture"

    def trigger(self, table: str, kind: Literal["w", "u", "d"]) -> str:
        return f"{self.prefix}_{kind}_{table}"

    @property
    def pending_fence(self) -> str:
        """`moved_to` of the fence that keeps a target closed until its cutover."""
        return f"migration:{self.migration_id}"


OBJECT_PREFIX: Final = "mig_"


def migration_id_of(object_name: str) -> uuid.UUID | None:
    """The migration an object belongs to, from its name (`mig_<32 hex>_...`)."""
    if not object_name.startswith(OBJECT_PREFIX) or len(object_name) < len(OBJECT_PREFIX) + 32:
        return None
    try:
        return uuid.UUID(hex=object_name[len(OBJECT_PREFIX) : len(OBJECT_PREFIX) + 32])
    except ValueError:
        return None


def migration_event(event_type: str, row: Any, **extra: Any) -> Envelope:
    """migration.started / phase_changed / completed / failed / cancelled: the migration as it is now
    (`row`: a SQLAlchemy row or an asyncpg record of tenant_migrations)."""
    fields: Mapping[str, Any] = row._mapping if hasattr(row, "_mapping") else row
    data: dict[str, Any] = {
        "migration_id": str(fields["id"]),
        "migration_type": fields["migration_type"],
        "status": fields["status"],
        "phase": fields["phase"],
        "from_state": fields["from_state"],
        "to_state": fields["to_state"],
        "error_message": fields["error_message"],
        **extra,
    }
    return Envelope(event_type=event_type, tenant_id=fields["tenant_id"], producer=PRODUCER, data=data)


def placement_changed_event(
    tenant_id: uuid.UUID, tenant_type: Variant, database_name: str | None, epoch: int
) -> Envelope:
    data = PlacementChanged(
        tenant_id=tenant_id, tenant_type=tenant_type, database_name=database_name, placement_epoch=epoch
    )
    return Envelope(
        event_type="tenant.placement_changed",
        tenant_id=tenant_id,
        producer=PRODUCER,
        data=data.model_dump(mode="json"),
    )
