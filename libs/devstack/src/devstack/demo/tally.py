"""Every request the demo sends, counted: kind, tenant, outcome (status code or error), latency.

A request has failed when its answer is not the one expected (a read 200, a write 201) or it got no
answer at all (a connection error or timeout, counted by the exception's name). Nothing is sampled:
the summary's numbers are the counts of what was sent.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

MAX_FAILURE_DETAILS = 10


@dataclass(frozen=True)
class Sample:
    tenant: str | None
    kind: str
    started_at: float  # wall clock (time.time()): compared with the migrator's recorded times
    seconds: float
    outcome: str  # the status code as text, or the exception's class name
    ok: bool


@dataclass
class Tally:
    samples: list[Sample] = field(default_factory=list)
    failure_details: list[str] = field(default_factory=list)

    def record(
        self,
        *,
        tenant: str | None,
        kind: str,
        started_at: float,
        seconds: float,
        outcome: str,
        ok: bool,
        detail: str | None = None,
    ) -> Sample:
        sample = Sample(tenant, kind, started_at, seconds, outcome, ok)
        self.samples.append(sample)
        if not ok and len(self.failure_details) < MAX_FAILURE_DETAILS:
            self.failure_details.append(detail or f"{kind} {tenant or ''}: {outcome}".strip())
        return sample

    # ------------------------------------------------------------------ reading it

    @property
    def sent(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if not s.ok)

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(s.kind for s in self.samples))

    def failures_by_outcome(self) -> dict[str, int]:
        return dict(Counter(s.outcome for s in self.samples if not s.ok))

    def for_tenant(self, tenant: str) -> list[Sample]:
        return [s for s in self.samples if s.tenant == tenant]

    def tenant_counts(self, tenant: str) -> tuple[int, int]:
        """(sent, failed) for one tenant."""
        mine = self.for_tenant(tenant)
        return len(mine), sum(1 for s in mine if not s.ok)

    def longest_in_window(self, tenant: str, start: float, end: float) -> Sample | None:
        """The slowest of the tenant's requests that were in flight at some moment of [start, end]."""
        overlapping = [
            s for s in self.for_tenant(tenant) if s.started_at <= end and s.started_at + s.seconds >= start
        ]
        return max(overlapping, key=lambda s: s.seconds, default=None)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation: a value that was measured)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def now() -> tuple[float, float]:
    """(wall clock, monotonic clock) at the same moment."""
    return time.time(), time.monotonic()
