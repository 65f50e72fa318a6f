"""The ``/`` filter: an input line that narrows every table and the log to matching rows."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input

from opsctl.tui.messages import FilterChanged


class FilterBar(Input):
    """Hidden until ``/``; Enter keeps the filter, Escape clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear", "Clear filter")]
    DEFAULT_CSS = """
    FilterBar { display: none; }
    FilterBar.-shown { display: block; }
    FilterBar, FilterBar:focus { border: none; height: 1; padding: 0 1; background: $boost; }
    """

    def __init__(self) -> None:
        super().__init__(placeholder="filter rows: Enter keeps it, Esc clears it", id="filter")

    def open(self) -> None:
        self.add_class("-shown")
        self.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(FilterChanged(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.set_class(bool(self.value), "-shown")
        self.post_message(FilterChanged(self.value, done=True))

    def action_clear(self) -> None:
        self.value = ""
        self.remove_class("-shown")
        self.post_message(FilterChanged("", done=True))
