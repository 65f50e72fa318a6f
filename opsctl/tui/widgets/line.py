"""A caption or detail line that repaints only when its text changes."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class Line(Static):
    """Text never parsed as markup (a reason may hold ``[Errno 111]``); an unchanged ``show``
    costs nothing, so a pane can set its lines on every refresh."""

    def __init__(
        self, content: str | Text = "", *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(content, id=id, classes=classes, markup=False)
        self.shown: str | Text = content

    def show(self, content: str | Text) -> None:
        if content != self.shown:
            self.shown = content
            self.update(content)
