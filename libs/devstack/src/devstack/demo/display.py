"""Live progress: a rich live board in a terminal, plain lines otherwise (a log, a test's pipe).

The scenario writes to a `Board` (the step, each tenant's placement and move) and calls `event()` for
what happened; the display reads the board and the tally when it refreshes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from devstack.demo.tally import Tally, percentile

PLAIN_STATUS_EVERY = 5.0


@dataclass
class BoardTenant:
    name: str
    plan: str
    tenant_type: str = "shared"
    move: str = ""


@dataclass
class Board:
    tally: Tally
    step: str = "starting"
    tenants: dict[str, BoardTenant] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def status_line(self) -> str:
        parts = [
            f"[{self.elapsed():5.0f} s] {self.step}",
            f"{self.tally.sent:,} sent, {self.tally.failed:,} failed",
        ]
        for tenant in self.tenants.values():
            parts.append(f"{tenant.name}: {tenant.tenant_type}" + (f", {tenant.move}" if tenant.move else ""))
        return " | ".join(parts)


class Display(Protocol):
    def event(self, text: str, *, step: bool = False) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...

    def print_lines(self, lines: list[str]) -> None: ...


class PlainDisplay:
    """One line per event, and a status line every few seconds."""

    def __init__(self, board: Board, out: IO[str] | None = None) -> None:
        self.board = board
        self.out = out or sys.stdout
        self._last_status = 0.0

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, text: str, *, step: bool = False) -> None:
        self._write(f"demo: [{self.board.elapsed():5.0f} s] " + (f"== {text}" if step else text))

    def tick(self) -> None:
        if time.monotonic() - self._last_status >= PLAIN_STATUS_EVERY:
            self._last_status = time.monotonic()
            self._write(f"demo: {self.board.status_line()}")

    def close(self) -> None:
        pass

    def print_lines(self, lines: list[str]) -> None:
        for line in lines:
            self._write(line)


class LiveDisplay:
    """rich's Live board: the step, a table of tenants (placement, move, requests, failures, p99)."""

    def __init__(self, board: Board) -> None:
        from rich.console import Console
        from rich.live import Live

        self.board = board
        self.console = Console()
        self.live = Live(
            console=self.console, refresh_per_second=4, get_renderable=self._render, transient=True
        )
        self.live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        board = self.board
        tally = board.tally
        header = Text.assemble(
            ("demo ", "bold"),
            (f"{board.elapsed():4.0f} s  ", "dim"),
            (board.step, "cyan"),
            f"   {tally.sent:,} requests, ",
            (f"{tally.failed:,} failed", "bold red" if tally.failed else "green"),
        )
        grid = Table(expand=False, show_edge=False, pad_edge=False)
        for column in ("tenant", "plan", "placement", "sent", "failed", "p99 (last 10 s)", "move"):
            grid.add_column(
                column, justify="right" if column in ("sent", "failed", "p99 (last 10 s)") else "left"
            )
        recent_since = time.time() - 10
        for key, tenant in board.tenants.items():
            mine = tally.for_tenant(key)
            failed = sum(1 for s in mine if not s.ok)
            recent = [s.seconds for s in mine if s.started_at >= recent_since and s.kind in ("read", "order")]
            p99 = percentile(recent, 0.99)
            grid.add_row(
                tenant.name,
                tenant.plan,
                Text(tenant.tenant_type, style="bold magenta" if tenant.tenant_type == "dedicated" else ""),
                f"{len(mine):,}",
                Text(f"{failed:,}", style="bold red" if failed else ""),
                "-" if p99 is None else f"{p99 * 1000:,.0f} ms",
                tenant.move,
            )
        return Group(header, grid)

    def event(self, text: str, *, step: bool = False) -> None:
        from rich.markup import escape

        body = f"[bold cyan]{escape(text)}[/bold cyan]" if step else escape(text)
        self.console.print(f"[dim]{self.board.elapsed():5.0f} s[/dim]  {body}", highlight=False)

    def tick(self) -> None:
        pass  # Live refreshes by itself

    def close(self) -> None:
        self.live.stop()

    def print_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.console.print(line, highlight=False, markup=False)


def make_display(board: Board, *, interactive: bool | None = None) -> Display:
    if interactive is None:
        interactive = sys.stdout.isatty()
    return LiveDisplay(board) if interactive else PlainDisplay(board)
