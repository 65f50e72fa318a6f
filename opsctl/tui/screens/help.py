"""``?``: every key of the dashboard."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, str], ...] = (
    ("1-7", "switch pane: processes, queue, gate, connectors, limits, health, logs"),
    ("h / l, tab", "previous / next pane; tab moves between tables"),
    ("↑ ↓, j / k", "move the selection; g / G first / last row"),
    ("/", "filter every table and the log; Enter keeps it, Esc clears it"),
    ("r", "processes: restart the selected process; queue: retry the dead letter"),
    ("s", "processes: stop the selected process (drained first)"),
    ("p / d", "connectors: promote / demote the selected connector"),
    ("f", "logs: follow the newest line, or pause"),
    ("ctrl+r", "refresh every pane now"),
    ("?", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,enter", "close", "Close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, *, read_only: bool = False) -> None:
        super().__init__()
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False, expand=True)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(ratio=1)
        for key, what in KEYS:
            if self.read_only and key in ("r", "s", "p / d"):
                continue
            table.add_row(key, what)
        with VerticalScroll():
            title = "opsctl dashboard keys" + (" (read-only: no actions)" if self.read_only else "")
            yield Static(f"[b]{title}[/b]\n")
            yield Static(table)
            yield Static("\n[dim]Esc closes[/dim]")

    def action_close(self) -> None:
        self.dismiss(None)
