"""The top line: what is up and what is down, at a glance, plus the mode and the filter."""

from __future__ import annotations

from typing import Literal

from rich.text import Text
from textual.widgets import Static

Health = Literal["ok", "warn", "down", "unknown"]
_MARKS: dict[Health, tuple[str, str, str]] = {
    "ok": ("●", "green", ""),
    "warn": ("●", "yellow", "yellow"),
    "down": ("●", "bold red", "bold red"),
    "unknown": ("○", "dim", "dim"),
}


class StatusBar(Static):
    """``set(source, health, label)`` for each of supervisor, queue, web and gate."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, *, read_only: bool = False) -> None:
        super().__init__("", id="status-bar")
        self.read_only = read_only
        self.sources: dict[str, tuple[Health, str]] = {
            name: ("unknown", name) for name in ("supervisor", "queue", "web", "gate")
        }
        self.filter = ""

    def on_mount(self) -> None:
        self._draw()

    def set(self, source: str, health: Health, label: str) -> None:
        if self.sources.get(source) != (health, label):
            self.sources[source] = (health, label)
            self._draw()

    def set_filter(self, text: str) -> None:
        self.filter = text
        self._draw()

    @property
    def plain(self) -> str:
        return self._text().plain

    def _text(self) -> Text:
        text = Text("opsctl ", style="bold")
        for health, label in self.sources.values():
            mark, mark_style, label_style = _MARKS[health]
            text.append(f" {mark} ", style=mark_style)
            text.append(label, style=label_style)
        if self.read_only:
            text.append("  read-only", style="bold yellow")
        if self.filter:
            text.append(f"  /{self.filter}", style="bold cyan")
        return text

    def _draw(self) -> None:
        self.update(self._text())
