"""The composition root of usage: the servicekit factory (platform database) with usage's routes and
use cases, its aggregating consumer and reconciler as background work (usage.consumers), and the
topic it publishes to through the outbox."""

from __future__ import annotations

from events import topics
from fastapi import FastAPI
from servicekit.app import Publication, create_platform_service
from servicekit.platform import PlatformDB

import usage
from usage import api, consumers
from usage.domain import Clock, utc_now
from usage.settings import UsageSettings, get_settings
from usage.usecases import UsageService

VERSION = "0.1.0"


def create_app(
    settings: UsageSettings | None = None, *, clock: Clock = utc_now, freeze_gc: bool = False
) -> FastAPI:
    """`clock`: what "now" is for month rollover and the current month (tests move it)."""
    settings = settings or get_settings()
    triggers = settings.migration_triggers()

    def usecases(db: PlatformDB) -> UsageService:
        return UsageService(db, triggers=triggers, clock=clock)

    return create_platform_service(
        settings,
        version=VERSION,
        description=usage.__doc__ or "",
        routers=[api.router],
        usecases=usecases,
        register=consumers.register,
        publishes=[
            Publication(
                topics.THRESHOLDS,
                "tenant.threshold_crossed {metric, value, threshold, period}; key: the tenant id; one "
                "per tenant, metric and period, its event_id derived from that key",
            )
        ],
        freeze_gc=freeze_gc,
    )
