"""The Gate pane: `opsctl deploy-gate`'s checks, refreshed live."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll

from opsctl.tui.data import GateData
from opsctl.tui.widgets.gate_view import GateView


class GatePane(VerticalScroll):
    def __init__(self) -> None:
        super().__init__(id="gate-pane")
        self.data: GateData | None = None

    def compose(self) -> ComposeResult:
        yield GateView("waiting for the first round of checks…", id="gate")

    def show_gate(self, data: GateData) -> None:
        self.data = data
        self.query_one(GateView).show_gate(data)
