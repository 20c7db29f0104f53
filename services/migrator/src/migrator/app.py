"""The composition root of the migrator: the servicekit factory (platform database) with the
migrator's routes and use cases, and the runner that moves tenants, started with the app."""

from __future__ import annotations

from events import topics
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from servicekit.app import PlatformService, Publication, create_platform_service
from servicekit.platform import PlatformDB

import migrator
from migrator import api, consumers
from migrator.placement_usecases import PlacementService
from migrator.provisioner import SqlProvisioner
from migrator.runner import Runner
from migrator.settings import MigratorSettings, get_settings
from migrator.usecases import MigratorService, PlacementAdvisor

VERSION = "0.1.0"


def create_app(settings: MigratorSettings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    settings = settings or get_settings()
    runners: list[Runner] = []
    advisors: list[PlacementAdvisor] = []
    placements: list[PlacementService] = []  # the API's view of the decisions (same pool)

    def usecases(db: PlatformDB) -> MigratorService:
        service = MigratorService(db)
        runner = Runner(settings, db, SqlProvisioner(settings))
        service.on_request(runner.wake)
        runners.append(runner)
        advisors.append(
            PlacementAdvisor(
                db,
                service,
                triggers=settings.migration_triggers(),
                policy=settings.placement_policy(),
                costs=settings.placement_costs(),
            )
        )
        placements.append(PlacementService(db, settings))
        return service

    def register(broker: KafkaBroker, service: PlatformService[MigratorSettings, MigratorService]) -> None:
        consumers.register(broker, service, wake=runners[0].wake)
        if settings.migrator_runner_enabled:  # started with the app, stopped before its relay
            service.background.append(runners[0])

    app = create_platform_service(
        settings,
        version=VERSION,
        description=migrator.__doc__ or "",
        routers=[api.router],
        usecases=usecases,
        register=register,
        publishes=[
            Publication(
                topics.MIGRATIONS,
                "migration.started, migration.phase_changed, migration.completed, migration.failed, "
                "migration.cancelled; key: the tenant id; data: the migration (id, type, status, phase)",
            ),
            Publication(
                topics.TENANTS,
                "tenant.placement_changed at each cutover; key: the tenant id; data: "
                "events.models.PlacementChanged",
            ),
        ],
        freeze_gc=freeze_gc,
    )
    app.state.runner = runners[0]
    app.state.placement = placements[0]  # GET /v1/placement/decisions
    app.state.advisor = advisors[0]  # GET /v1/placement/plan
    return app
