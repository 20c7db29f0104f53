"""The copy's bookkeeping that needs no database: which tables a row count lets the copy skip (and
count as verified), and the crash hook's `point@N`."""

from __future__ import annotations

from typing import Any

import pytest
from migrator import runner


def _tables(**states: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"rows": 0, "total": None, "last_id": None, "done": False} | state
        for name, state in states.items()
    }


def test_an_empty_table_not_begun_is_done_and_reported() -> None:
    tables = _tables(products={}, orders={})
    empty = runner._count_totals(tables, {"products": 0, "orders": 5})
    assert empty == ["products"]
    assert tables["products"] == {"rows": 0, "total": 0, "last_id": None, "done": True}
    assert tables["orders"] == {"rows": 0, "total": 5, "last_id": None, "done": False}


def test_a_table_resumed_or_finished_is_not_reported_empty() -> None:
    tables = _tables(products={"last_id": "0000", "rows": 7}, orders={"done": True})
    assert runner._count_totals(tables, {"products": 0, "orders": 0}) == []
    assert tables["products"]["done"] is False


@pytest.mark.parametrize(
    ("wanted", "hits", "killed_at"),
    [("copy:chunk", 3, 1), ("copy:chunk@3", 5, 3), ("copy", 2, 1), ("cutover:held", 4, None)],
)
def test_the_crash_hook_kills_at_the_nth_time(
    monkeypatch: pytest.MonkeyPatch, wanted: str, hits: int, killed_at: int | None
) -> None:
    kills: list[int] = []
    calls = 0
    monkeypatch.setenv(runner.CRASH_ENV, wanted)
    monkeypatch.setattr(runner, "_CRASH_HITS", {})
    monkeypatch.setattr(runner.os, "kill", lambda pid, sig: kills.append(calls))
    for calls in range(1, hits + 1):  # noqa: B007 (read by the fake kill)
        runner.crash_point("copy", "chunk")
    assert (kills[0] if kills else None) == killed_at
