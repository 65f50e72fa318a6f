"""The answer to a promote or demote: what changed, or why it was refused, condition by
condition."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from opsctl.tui import format as fmt
from opsctl.tui.data import StageOutcome


class OutcomeScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "close", "Close")]
    DEFAULT_CSS = """
    OutcomeScreen { align: center middle; }
    OutcomeScreen > VerticalScroll {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: thick $error; background: $surface; padding: 0 1;
    }
    OutcomeScreen.-ok > VerticalScroll { border: thick $success; }
    """

    def __init__(self, outcome: StageOutcome) -> None:
        super().__init__(classes="-ok" if outcome.outcome in ("changed", "unchanged") else "")
        self.outcome = outcome

    def compose(self) -> ComposeResult:
        outcome = self.outcome
        with VerticalScroll():
            yield Static(Text(outcome.summary + "\n", style="bold"), id="outcome-summary")
            if outcome.conditions:
                table = Table(box=None, show_header=False, pad_edge=False, expand=True)
                table.add_column(no_wrap=True)
                table.add_column(no_wrap=True)
                table.add_column(ratio=1, overflow="fold")
                for c in outcome.conditions:
                    table.add_row(fmt.status_text(c.status), c.name, c.reason)
                yield Static(table, id="outcome-conditions")
            yield Static(Text("\nEsc or Enter closes", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
