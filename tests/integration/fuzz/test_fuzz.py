"""schemathesis against each service's OpenAPI document (conftest.FUZZ_TARGETS), in-process with the
real lifespan and the dev stack: no 5xx, and every response (status, content type, body) as documented.
A failure shows the reproducing request as a curl command."""

from __future__ import annotations

import time

import pytest

from tests.integration.fuzz.conftest import FuzzTarget
from tests.support import fuzz

# schemathesis' own strategies use the `random` module, which hypothesis warns about on every case.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


def test_every_response_is_documented_and_no_5xx(fuzz_target: FuzzTarget) -> None:
    started = time.monotonic()
    report = fuzz.fuzz_app(fuzz_target.app, fuzz_target.headers, seed=fuzz_target.seed)
    print(  # shown with -s or on failure: what the budget bought
        f"{len(report.operations)} operations, {report.requests} requests "
        f"in {time.monotonic() - started:.1f}s: {report.seconds}"
    )
    for operation, statuses in report.statuses.items():
        print(f"  {operation}: {dict(sorted(statuses.items()))}")
        print(f"     refused valid: {report.refused[operation].most_common(6)}")
