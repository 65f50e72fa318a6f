"""The Logs pane: the supervisor's log and event stream, and whether it is connected."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.containers import Vertical

from opsctl.supervisor.events import Event
from opsctl.tui.widgets.log_pane import LogPane
from opsctl.tui.widgets.notice import Notice


class LogsPane(Vertical):
    def __init__(self, *, hide: str | None = None) -> None:
        super().__init__(id="logs-pane")
        self.hide = hide

    def compose(self) -> ComposeResult:
        yield Notice(id="logs-notice")
        yield LogPane(hide=self.hide, id="log")

    def add_events(self, events: Iterable[Event]) -> None:
        self.query_one(LogPane).add_events(events)

    def stream_state(self, error: str | None) -> None:
        self.query_one(Notice).say(f"log stream: {error}" if error else None)
