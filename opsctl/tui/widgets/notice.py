"""A one-line notice above a pane's content: what is down, hidden while all is well."""

from __future__ import annotations

from textual.widgets import Static


class Notice(Static):
    """Shows ``text`` in the error colour, or nothing (and takes no room) when it is None."""

    DEFAULT_CSS = """
    Notice {
        color: $error;
        text-style: bold;
        padding: 0 1;
        height: auto;
        display: none;
    }
    Notice.-shown { display: block; }
    Notice.-info { color: $text-muted; text-style: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.text: str | None = None

    def say(self, text: str | None, *, info: bool = False) -> None:
        if text == self.text and self.has_class("-info") == info:
            return
        self.text = text
        self.set_class(text is not None, "-shown")
        self.set_class(info, "-info")
        self.update(text or "")
