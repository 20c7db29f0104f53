"""schemathesis against the migrator's placement plan alone (`GET /v1/placement/plan`): no 5xx, every
answer as documented (the plan's schema, or a problem body naming the parameter). The rest of the
migrator's API is left out here, `POST /v1/placement/plan/apply` included: its fuzz would ask for
moves of real tenants."""

from __future__ import annotations

import pytest
from migrator.app import create_app

from tests.integration.migrator.conftest import migrator_settings
from tests.support import fuzz

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


def test_the_placement_plan_answers_every_request_as_documented(stack_env: dict[str, str]) -> None:
    app = create_app(migrator_settings(stack_env, migrator_runner_enabled=False))
    try:
        report = fuzz.fuzz_app(app, {}, paths=r"^/v1/placement/plan$")
    finally:
        fuzz.stop_apps()
    assert report.operations == ["GET /v1/placement/plan"]
    statuses = report.statuses["GET /v1/placement/plan"]
    print(f"{report.requests} requests: {dict(sorted(statuses.items()))}")
    # Both the plan and the refusals were reached.
    assert statuses[200] > 0, statuses
    assert statuses[422] > 0, statuses
