"""Every Kafka subscription of the catalog, in one place.

The catalog consumes no business events; it only keeps its tenant directory cache honest, from
`tenancy.tenants.v1` (tenantdb.subscriber: no consumer group, every process sees every change).
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from servicekit.app import TenantService
from tenantdb.subscriber import mount_directory_invalidation

from catalog.settings import CatalogSettings
from catalog.usecases import Catalog


def register(broker: KafkaBroker, service: TenantService[CatalogSettings, Catalog]) -> None:
    mount_directory_invalidation(broker, service.tdb.directory)
