"""The composition root of tenancy: the servicekit factory (platform database only) with tenancy's
routes, use cases and topic. tenancy consumes nothing, so it registers no subscriptions."""

from __future__ import annotations

from events import topics
from fastapi import FastAPI
from servicekit.app import Publication, create_platform_service
from servicekit.platform import PlatformDB

import tenancy
from tenancy import api
from tenancy.settings import TenancySettings, get_settings
from tenancy.usecases import TenancyService

VERSION = "0.1.0"


def create_app(settings: TenancySettings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    settings = settings or get_settings()
    base_domain = settings.base_domain

    def usecases(db: PlatformDB) -> TenancyService:
        return TenancyService(db, base_domain=base_domain)

    return create_platform_service(
        settings,
        version=VERSION,
        description=tenancy.__doc__ or "",
        routers=[api.router],
        usecases=usecases,
        publishes=[
            Publication(
                topics.TENANTS,
                "tenant.created, tenant.updated, tenant.plan_changed, tenant.deleted; key: the tenant "
                "id; data: events.models.TenantData (tenant.plan_changed: events.models.PlanChanged)",
            )
        ],
        freeze_gc=freeze_gc,
    )
