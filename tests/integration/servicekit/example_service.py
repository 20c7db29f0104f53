"""A whole tenant service on the servicekit factory: what libs/servicekit/README.md shows, verbatim
(tests/integration/servicekit/test_factory.py builds it and checks the README still quotes it)."""

from __future__ import annotations

import uuid

from events import outbox
from events.envelope import Envelope
from fastapi import APIRouter, FastAPI, Request, status
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, Field
from servicekit.app import Publication, TenantService, create_tenant_service
from servicekit.errors import NotFound
from servicekit.http import TenantId, usecases
from servicekit.settings import ServiceSettings
from tenantdb import TenantDB
from tenantdb.subscriber import mount_directory_invalidation

TOPIC = "example.greetings.v1"


class GreeterSettings(ServiceSettings):  # settings.py: only the service's own fields and defaults
    service_name: str = "greeter"
    port: int = 8199


class Greetings:  # usecases.py: a unit of work per use case, events into the outbox, domain errors
    def __init__(self, tdb: TenantDB) -> None:
        self._tdb = tdb

    async def greet(self, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
        event = Envelope(
            event_type="greeting.sent", tenant_id=tenant_id, producer="greeter", data={"name": name}
        )
        async with self._tdb.unit_of_work(tenant_id) as uow:
            await outbox.record(uow.connection, TOPIC, event)
            await uow.commit()  # the relay wakes and publishes it
        return event.event_id

    async def get(self, tenant_id: uuid.UUID, greeting_id: uuid.UUID) -> None:
        raise NotFound(f"greeting {greeting_id} is not kept")  # 404 problem details, mapped in servicekit


class Greet(BaseModel):  # schemas.py
    name: str = Field(min_length=1, max_length=100)


class Greeted(BaseModel):
    event_id: uuid.UUID


router = APIRouter(prefix="/v1")  # api.py: parse, call a use case, shape the response
uses = usecases(Greetings)


@router.post("/greetings", status_code=status.HTTP_201_CREATED)
async def greet(body: Greet, tenant: TenantId, request: Request) -> Greeted:
    return Greeted(event_id=await uses(request).greet(tenant, body.name))


@router.get("/greetings/{greeting_id}")
async def get_greeting(greeting_id: uuid.UUID, tenant: TenantId, request: Request) -> Greeted:
    await uses(request).get(tenant, greeting_id)
    return Greeted(event_id=greeting_id)


def register(broker: KafkaBroker, service: TenantService[GreeterSettings, Greetings]) -> None:
    mount_directory_invalidation(broker, service.tdb.directory)  # consumers.py: every subscription


def create_app(settings: GreeterSettings, *, freeze_gc: bool = False) -> FastAPI:  # app.py
    return create_tenant_service(
        settings,
        version="0.1.0",
        routers=[router],
        usecases=Greetings,
        register=register,
        publishes=[Publication(TOPIC, "greeting.sent; key: the tenant id")],
        freeze_gc=freeze_gc,  # True only from `python -m greeter`: see servicekit.app.run
    )
