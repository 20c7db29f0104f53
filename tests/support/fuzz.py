"""OpenAPI fuzzing of a service's app, in-process over ASGI, with schemathesis.

`fuzz_app(app, headers)` fetches the app's own /openapi.json through schemathesis' ASGI client, which
runs the app's real lifespan (broker, relay, counter against the dev stack) on schemathesis' one
event-loop thread until `stop_apps()`; then, for every operation, it runs schemathesis' generated test
(its examples, coverage and fuzzing phases): each request carries `headers` (a tenant-scoped service
needs a real X-Tenant-ID to reach its logic) and its response goes through the checks below. Every
failing operation is reported with the reproducing request (schemathesis renders it as a curl command).

schemathesis' own pytest entry point (`from_fixture` + `parametrize`) does not run under pytest 9.2
(it rewrites `Node._nodeid`, which pytest no longer has), hence the loop over operations here.

The budget is fixed (examples per operation, seed, no example database), so a run is repeatable and
its duration bounded: the three services together take about a minute on the 2-core CI machine.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import requests
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SEED: Final = 20261201
EXAMPLES_PER_OPERATION: Final = 40
# The paths a service serves to clients; /healthz, /readyz and /metrics are not in the document.
API_PATHS: Final = r"^/v1/"

# No 5xx, and every response as documented: its status code, content type and body (the problem
# schema for errors, so every error is an RFC 9457 body).
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

CONFIG: Final = {
    "seed": SEED,
    "generation": {
        "mode": "all",  # valid requests, and requests that break the schema (each must be a 4xx)
        "max-examples": EXAMPLES_PER_OPERATION,
        "allow-x00": True,  # NUL characters in strings: PostgreSQL cannot store them
        "deterministic": True,
        "database": "none",  # nothing carried over from earlier runs: the same cases every time
    },
    "phases": {
        "examples": {"enabled": True},
        # Boundary values for every constraint the document states (max length + 1, maximum + 0.01...).
        "coverage": {"enabled": True, "unexpected-methods": []},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
}


def load_schema(app: FastAPI, *, examples: int = EXAMPLES_PER_OPERATION, paths: str = API_PATHS) -> Any:
    """The app's OpenAPI document, restricted to its API paths (`paths`, a regex), with the fixed
    budget and seed."""
    config = SchemathesisConfig.from_dict(
        CONFIG | {"generation": CONFIG["generation"] | {"max-examples": examples}}
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    return schema.include(path_regex=paths)


@dataclass
class Report:
    operations: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    # Per operation, how many responses of each status: shows whether the cases reached the logic.
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    refused: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[str] = field(default_factory=list)


# Adjusts a generated case before it is sent (e.g. points it at a resource that exists).
Prepare = Callable[[Any], None]
# Given a client of the running app (its headers set), makes what the cases should reach, through the
# API, and returns how to prepare each case.
Seed = Callable[[requests.Session], Prepare]


def fuzz_app(
    app: FastAPI,
    headers: Mapping[str, str],
    *,
    seed: Seed | None = None,
    examples: int = EXAMPLES_PER_OPERATION,
    paths: str = API_PATHS,
) -> Report:
    """Fuzz every operation of `app` (under `paths`); raise an AssertionError naming each failing one."""
    schema = load_schema(app, examples=examples, paths=paths)  # starts the app's lifespan
    prepare: Prepare = lambda case: None  # noqa: E731
    if seed is not None:
        with asgi.get_client(app) as session:
            session.headers.update(headers)
            prepare = seed(session)
    report = Report()

    def check_case(case: Any) -> None:
        report.requests += 1
        prepare(case)
        response = case.call_and_validate(headers=dict(headers), checks=CHECKS)
        report.statuses[case.operation.label][response.status_code] += 1
        # Valid requests (by the document) that were refused anyway: constraints the document misses.
        mode = getattr(getattr(getattr(case, "meta", None), "generation", None), "mode", "")
        if response.status_code == 422 and "positive" in str(mode).lower():
            for error in response.json().get("errors", []):
                report.refused[case.operation.label][f"{error.get('field')}: {error.get('type')}"] += 1

    for result in get_all_tests(schema=schema, test_func=check_case, settings=None, given_kwargs={}):
        operation, test = result.ok()  # an operation schemathesis cannot read is an error, raised here
        report.operations.append(operation.label)
        started = time.monotonic()
        try:
            test()
        # hypothesis re-raises the shrunk failure, with its request (a FailureGroup: an exception group)
        except (Exception, BaseExceptionGroup) as error:
            report.failures.append(f"{operation.label}:\n{error}")
        report.seconds[operation.label] = round(time.monotonic() - started, 1)
    assert report.operations, "the document lists no operation under " + paths
    assert not report.failures, "\n\n".join(report.failures)
    return report


def stop_apps() -> None:
    """Run the shutdown half of every lifespan schemathesis started (brokers, relays, pools)."""
    asgi.shutdown_lifespans()
