"""The Health pane: feature flags and readiness from the web daemon."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll

from opsctl.tui.data import HealthData
from opsctl.tui.widgets.health_view import HealthView
from opsctl.tui.widgets.notice import Notice


class HealthPane(VerticalScroll):
    def __init__(self) -> None:
        super().__init__(id="health-pane")
        self.data: HealthData | None = None

    def compose(self) -> ComposeResult:
        yield Notice(id="health-notice")
        yield HealthView("", id="health")

    def show_health(self, data: HealthData) -> None:
        self.data = data
        self.query_one(Notice).say(data.error)
        if data.error is None:
            self.query_one(HealthView).show_health(data)
