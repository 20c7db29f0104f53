"""Benchmarks (`make bench [BENCH=<prefix>]`, CONTRACT.md §1).

A benchmark module is `bench/bench_<area>.py` with

    BENCHMARKS: tuple[str, ...] = ("tenantdb.rls_select", ...)      # the names it can measure
    def run(selected: Sequence[str], env: Mapping[str, str]) -> Iterable[Measure]   # or `async def`

`selected` holds the names that match the requested prefix; `env` holds the stack.env values.
Every `Measure` is printed as one JSON line:
`{"bench": "<area>.<name>", "value": number, "unit": str, "baseline": number|null, "ratio": number|null}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """One measured value; `ratio` defaults to value / baseline (orient measures so lower is better)."""

    bench: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None

    def effective_ratio(self) -> float | None:
        if self.ratio is not None:
            return self.ratio
        if self.baseline:
            return self.value / self.baseline
        return None

    def json_line(self) -> str:
        return json.dumps(
            {
                "bench": self.bench,
                "value": self.value,
                "unit": self.unit,
                "baseline": self.baseline,
                "ratio": self.effective_ratio(),
            }
        )


__all__ = ["Measure"]
