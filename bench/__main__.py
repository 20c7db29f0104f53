"""`python -m bench [PREFIX]`: run every bench/bench_*.py benchmark whose name starts with PREFIX."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType

import bench
from bench import Measure


def discover() -> list[ModuleType]:
    names = sorted(
        info.name for info in pkgutil.iter_modules(bench.__path__) if info.name.startswith("bench_")
    )
    return [importlib.import_module(f"bench.{name}") for name in names]


def _run_module(module: ModuleType, selected: Sequence[str], env: Mapping[str, str]) -> list[Measure]:
    outcome = module.run(selected, env)
    if inspect.isawaitable(outcome):
        outcome = asyncio.run(_await(outcome))
    return list(outcome)


async def _await(awaitable: object) -> Iterable[Measure]:
    result: Iterable[Measure] = await awaitable  # type: ignore[misc]
    return result


def main(argv: Sequence[str]) -> int:
    prefix = argv[0] if argv else ""
    plan: list[tuple[ModuleType, list[str]]] = []
    for module in discover():
        names = [str(name) for name in getattr(module, "BENCHMARKS", ())]
        selected = [name for name in names if name.startswith(prefix)]
        if selected:
            plan.append((module, selected))
    if not plan:
        where = f" matching {prefix!r}" if prefix else ""
        print(f"bench: no benchmarks{where} (add bench/bench_<area>.py modules)", file=sys.stderr)
        return 0

    import devstack

    env = devstack.ensure_stack()
    failures = 0
    for module, selected in plan:
        started = time.monotonic()
        print(f"bench: {module.__name__}: {', '.join(selected)}", file=sys.stderr)
        try:
            measures = _run_module(module, selected, env)
        except Exception:
            failures += 1
            traceback.print_exc()
            continue
        for measure in measures:
            if measure.bench.startswith(prefix):
                print(measure.json_line(), flush=True)
        print(f"bench: {module.__name__} took {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
