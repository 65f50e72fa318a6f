"""The deploy gate's checks, as `opsctl deploy-gate` runs them, with every reason in full."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from opsctl.tui import format as fmt
from opsctl.tui.data import GateData


class GateView(Static):
    DEFAULT_CSS = """
    GateView { height: auto; padding: 0 1; }
    """

    shown: tuple[object, ...] = ()

    def show_gate(self, data: GateData) -> None:
        # Round-trip times change every round; what is shown changes far less often.
        key = (
            data.status,
            data.url,
            fmt.clock(data.taken_at),
            tuple((c.name, c.status, c.reason) for c in data.checks),
        )
        if key != self.shown:
            self.shown = key
            self.update(render_gate(data))


def render_gate(data: GateData) -> Group:
    verdict = Text("deploy gate: ", style="bold")
    verdict.append(
        {"pass": " PASS ", "warn": " PASS (warnings) ", "fail": " FAIL "}[data.status],
        style={"pass": "bold black on green", "warn": "bold black on yellow"}.get(
            data.status, "bold white on red"
        ),
    )
    verdict.append(f"  {data.url}  at {fmt.clock(data.taken_at)}", style="dim")
    table = Table(box=None, show_header=True, header_style="bold", expand=True, pad_edge=False)
    table.add_column("CHECK", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("REASON", ratio=1, overflow="fold")
    for check in data.checks:
        table.add_row(check.name, fmt.status_text(check.status), check.reason)
    return Group(verdict, Text(""), table)
