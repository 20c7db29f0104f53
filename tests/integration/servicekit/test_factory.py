"""The servicekit factory, through the smallest service built on it (example_service.py, quoted in
libs/servicekit/README.md): health, readiness, RED metrics, problem details and the outbox relay work
with no wiring beyond the service's short `create_app`. Real PostgreSQL and Kafka."""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from devstack.kafka import ensure_topics
from events.relay import OutboxRelay
from events.topics import dlq
from faststream.kafka import KafkaBroker
from prometheus_client.parser import text_string_to_metric_families
from servicekit.counting import RequestCounter
from servicekit.platform import PlatformDB
from tenantdb import TenantDB

from tests.integration.servicekit.example_service import TOPIC, GreeterSettings, create_app
from tests.integration.tenantdb.conftest import MakeTenant, dedicated_secret
from tests.support.apps import serve
from tests.support.kafka import watch
from tests.support.relay import relay_settings

README = Path(__file__).parents[3] / "libs" / "servicekit" / "README.md"
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
async def greeter(stack_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(stack_env["KAFKA_BOOTSTRAP_SERVERS"], [TOPIC, dlq(TOPIC)])
    settings = GreeterSettings(
        platform_database_url=stack_env["PLATFORM_DATABASE_URL"],
        shared_database_url=stack_env["SHARED_DATABASE_URL"],
        kafka_bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        dedicated_password_secret=dedicated_secret(),
        **relay_settings(stack_env),
    )
    async with serve(create_app(settings)) as client:
        yield client


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """`{sorted labels: value}` of one sample name in a /metrics body, parsed by prometheus-client."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def requests(text: str, route: str, method: str, status: int) -> float:
    key = (("method", method), ("route", route), ("status", str(status)))
    return samples(text, "http_requests_total").get(key, 0.0)


def durations(text: str, route: str, method: str) -> float:
    key = (("method", method), ("route", route))
    return samples(text, "http_request_duration_seconds_count").get(key, 0.0)


async def test_health_and_readiness(greeter: httpx.AsyncClient) -> None:
    assert (await greeter.get("/healthz")).json() == {"status": "ok"}
    ready = await greeter.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}


async def test_the_relay_publishes_what_a_use_case_wrote(
    greeter: httpx.AsyncClient, make_tenant: MakeTenant, kafka_bootstrap: str
) -> None:
    tenant = await make_tenant("shared")
    async with watch(kafka_bootstrap, TOPIC) as seen:
        response = await greeter.post(
            "/v1/greetings", json={"name": "Ada"}, headers={"X-Tenant-ID": str(tenant)}
        )
        assert response.status_code == 201
        event_id = response.json()["event_id"]
        [event] = await seen.wait_for(lambda m: m["event_id"] == event_id)
    assert event["tenant_id"] == str(tenant)
    assert event["event_type"] == "greeting.sent"
    assert event["data"] == {"name": "Ada"}
    assert seen.keys[seen.messages.index(event)] == str(tenant).encode()


async def test_problem_details_for_routes_validation_and_domain_errors(
    greeter: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = {"X-Tenant-ID": str(await make_tenant("shared"))}

    unknown = await greeter.get("/v1/nowhere", headers=tenant)
    assert (unknown.status_code, unknown.headers["content-type"]) == (404, PROBLEM_JSON)
    assert unknown.json()["status"] == 404

    invalid = await greeter.post("/v1/greetings", json={"name": ""}, headers=tenant)
    assert (invalid.status_code, invalid.headers["content-type"]) == (422, PROBLEM_JSON)
    assert [e["field"] for e in invalid.json()["errors"]] == ["name"]

    greeting = uuid.uuid4()
    refused = await greeter.get(f"/v1/greetings/{greeting}", headers=tenant)
    assert (refused.status_code, refused.headers["content-type"]) == (404, PROBLEM_JSON)
    assert refused.json()["detail"] == f"greeting {greeting} is not kept"
    assert refused.json()["instance"] == f"/v1/greetings/{greeting}"

    wrong_method = await greeter.delete("/v1/greetings", headers=tenant)
    assert (wrong_method.status_code, wrong_method.headers["content-type"]) == (405, PROBLEM_JSON)
    assert wrong_method.headers["allow"] == "POST"

    no_tenant = await greeter.post("/v1/greetings", json={"name": "Ada"})
    assert (no_tenant.status_code, no_tenant.headers["content-type"]) == (400, PROBLEM_JSON)

    unknown_tenant = await greeter.post(
        "/v1/greetings", json={"name": "Ada"}, headers={"X-Tenant-ID": str(uuid.uuid4())}
    )
    assert (unknown_tenant.status_code, unknown_tenant.headers["content-type"]) == (404, PROBLEM_JSON)


async def test_red_metrics_count_by_route_template_method_and_status(
    greeter: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = {"X-Tenant-ID": str(await make_tenant("shared"))}
    before = (await greeter.get("/metrics")).text

    for _ in range(3):
        assert (await greeter.post("/v1/greetings", json={"name": "Ada"}, headers=tenant)).status_code == 201
    await greeter.post("/v1/greetings", json={"name": ""}, headers=tenant)
    ids = [uuid.uuid4() for _ in range(2)]
    for greeting in ids:
        await greeter.get(f"/v1/greetings/{greeting}", headers=tenant)
    await greeter.get(f"/v1/{uuid.uuid4()}/nowhere")
    await greeter.delete("/v1/greetings")  # routed, but not that method: 405

    after = (await greeter.get("/metrics")).text
    for family in ("http_requests_total", "http_request_duration_seconds"):
        assert f"# TYPE {family} " in after

    def delta(route: str, method: str, status: int) -> float:
        return requests(after, route, method, status) - requests(before, route, method, status)

    assert delta("/v1/greetings", "POST", 201) == 3
    assert delta("/v1/greetings", "POST", 422) == 1
    assert delta("/v1/greetings/{greeting_id}", "GET", 404) == 2
    assert delta("<unmatched>", "GET", 404) == 1
    assert delta("/v1/greetings", "DELETE", 405) == 1
    assert durations(after, "/v1/greetings", "POST") - durations(before, "/v1/greetings", "POST") == 4
    # Bounded cardinality: no raw path, no id, no tenant in any label.
    labels = " ".join(str(key) for key in samples(after, "http_requests_total"))
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", labels)
    assert "nowhere" not in labels


def test_the_readme_quotes_the_example_verbatim() -> None:
    example = (Path(__file__).parent / "example_service.py").read_text()
    quoted = re.search(r"<!-- example_service.py -->\n```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert quoted is not None, "libs/servicekit/README.md lost its example block"
    assert quoted.group(1) == example


@pytest.mark.parametrize("relay_enabled", [True, False])
@pytest.mark.parametrize("service", ["tenancy", "catalog", "orders"])
def test_every_service_is_built_the_same_way(
    stack_env: dict[str, str], service: str, relay_enabled: bool
) -> None:
    """Same attributes on every app, and OUTBOX_RELAY_ENABLED honoured by each (built, not started)."""
    app_module = importlib.import_module(f"{service}.app")
    settings_module = importlib.import_module(f"{service}.settings")
    settings_class = next(
        value
        for name, value in vars(settings_module).items()
        if name.endswith("Settings") and name != "ServiceSettings"
    )
    settings = settings_class(
        platform_database_url=stack_env["PLATFORM_DATABASE_URL"],
        shared_database_url=stack_env["SHARED_DATABASE_URL"],
        kafka_bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        outbox_relay_enabled=relay_enabled,
    )
    app = app_module.create_app(settings)
    state = app.state
    assert state.settings is settings
    assert isinstance(state.broker, KafkaBroker)
    assert isinstance(state.relay, OutboxRelay) if relay_enabled else state.relay is None
    assert state.usecases is state.runtime.usecases
    if service == "tenancy":
        assert isinstance(state.platform_db, PlatformDB)
        assert state.counter is None  # its requests are not tenant-scoped
    else:
        assert isinstance(state.tdb, TenantDB)
        assert isinstance(state.counter, RequestCounter)
        assert state.tdb.settings.application_name == service
