"""Every Kafka subscription of the migrator: none yet. Moves are asked for over HTTP (and, in-process,
through `MigratorService.request_migration`); the automatic placement issue subscribes here to
`usage.thresholds.v1` and calls that entry point."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker
from servicekit.app import PlatformService


def register(broker: KafkaBroker, service: PlatformService[Any, Any]) -> None:
    """No subscriptions yet (see the module's docstring)."""
