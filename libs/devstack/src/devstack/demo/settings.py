"""What the live demo does, from the environment: `DEMO` (0 | 1 | short), `DEMO_EXIT`, ...

Two scenarios of the same story: `full` (what `make run` shows a person: slower, longer traffic) and
`short` (what the test runs: the same steps, shorter pauses, and a non-zero exit when it failed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from devstack.errors import DevstackError

Mode = Literal["off", "full", "short"]

MODE_ENV = "DEMO"
EXIT_ENV = "DEMO_EXIT"
SUMMARY_FILE_ENV = "DEMO_SUMMARY_FILE"
MOVE_TIMEOUT_ENV = "DEMO_MOVE_TIMEOUT_SECONDS"

_OFF = {"0", "off", "false", "no", "none"}
_FULL = {"", "1", "on", "true", "yes", "full"}
_SHORT = {"short"}


@dataclass(frozen=True)
class TenantSpec:
    """One demo tenant: its role in the story and its starting plan."""

    key: str  # "pushed", "upgraded", "bystander"
    name: str
    subdomain_prefix: str
    plan: str


TENANTS: tuple[TenantSpec, ...] = (
    TenantSpec("pushed", "Acme Outdoor", "acme", "basic"),
    TenantSpec("upgraded", "Globex Supplies", "globex", "professional"),
    TenantSpec("bystander", "Initech Books", "initech", "basic"),
)


@dataclass(frozen=True)
class Scenario:
    """The knobs of one run of the story (all durations in seconds)."""

    mode: Mode
    exit_after_summary: bool
    summary_file: str | None
    # Traffic: per tenant, paced (a worker that falls behind does not burst to catch up).
    reads_per_second: float
    orders_per_second: float
    warm_up_products: int
    steady_before_push: float
    steady_after_moves: float
    # The push: enough bulk products that the tenant's count reaches the products trigger.
    push_products: int
    bulk_batch: int
    # Bounds: nothing waits forever.
    read_model_timeout: float
    move_timeout: float
    usage_settle: float
    request_timeout: float
    poll_interval: float

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def strict(self) -> bool:
        """Short mode is the test's: a failed scenario is a non-zero exit code."""
        return self.mode == "short"


FULL = Scenario(
    mode="full",
    exit_after_summary=False,
    summary_file=None,
    reads_per_second=8.0,
    orders_per_second=2.0,
    warm_up_products=20,
    steady_before_push=8.0,
    steady_after_moves=8.0,
    push_products=10_000,
    bulk_batch=1_000,
    # A fresh stack's orders sees a product within a second or two; a persistent one may first have
    # an earlier run's 10,000 product events to apply (orders applies ~50-100 a second).
    read_model_timeout=180.0,
    move_timeout=240.0,
    usage_settle=5.0,
    request_timeout=15.0,
    poll_interval=0.5,
)

SHORT = replace(
    FULL,
    mode="short",
    reads_per_second=5.0,
    orders_per_second=2.0,
    warm_up_products=10,
    steady_before_push=2.0,
    steady_after_moves=2.0,
    read_model_timeout=60.0,
    move_timeout=120.0,
    usage_settle=3.0,
)


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in {"1", "true", "yes", "on"}


def load_scenario(environ: Mapping[str, str] | None = None) -> Scenario:
    """The scenario the environment asks for; `DEMO=0` gives one whose `enabled` is False."""
    environ = os.environ if environ is None else environ
    raw = environ.get(MODE_ENV, "").strip().lower()
    if raw in _OFF:
        base = replace(FULL, mode="off")
    elif raw in _SHORT:
        base = SHORT
    elif raw in _FULL:
        base = FULL
    else:
        raise DevstackError(f"{MODE_ENV}={raw!r}: expected 0, 1 or short")
    scenario = replace(
        base,
        exit_after_summary=_flag(environ.get(EXIT_ENV)),
        summary_file=environ.get(SUMMARY_FILE_ENV, "").strip() or None,
    )
    timeout_raw = environ.get(MOVE_TIMEOUT_ENV, "").strip()
    if timeout_raw:
        try:
            timeout = float(timeout_raw)
        except ValueError:
            raise DevstackError(f"{MOVE_TIMEOUT_ENV}={timeout_raw!r} is not a number of seconds") from None
        if timeout <= 0:
            raise DevstackError(f"{MOVE_TIMEOUT_ENV} must be positive")
        scenario = replace(scenario, move_timeout=timeout)
    return scenario
