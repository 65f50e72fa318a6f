"""The supervisor's event and log stream: a bounded buffer, a follow toggle, the filter."""

from __future__ import annotations

import re
import zlib
from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from opsctl.supervisor.core import describe_exit
from opsctl.supervisor.events import (
    Event,
    LogLine,
    Notice,
    ProcessExited,
    ProcessFailed,
    ProcessRestarting,
    ProcessStarted,
)
from opsctl.tui import format as fmt

LOG_LINES = 2000
"""Lines kept: older ones drop off the top, so a chatty daemon cannot grow the dashboard."""
_INDENT = 9  # under the text, past the time of day
_OWN_TIME = re.compile(r"^\d\d:\d\d:\d\d(?:[.,]\d+)? ")
_NAME_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta")


class LogPane(ScrollView, can_focus=True):
    """``f`` toggles following the newest line; ``/`` filters what is shown.

    Built on the line API: a line is rendered when it scrolls into view (and kept), so a
    burst of log lines costs little whether the pane is shown or not. Long lines are folded
    when they arrive, their continuation indented under the text.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "toggle_follow", "Follow"),
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("home,g", "scroll_home", "Top", show=False),
        Binding("end,G", "scroll_end", "Bottom", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
    ]
    DEFAULT_CSS = """
    LogPane { height: 1fr; background: $surface; scrollbar-size-vertical: 1; }
    """

    def __init__(
        self, *, max_lines: int = LOG_LINES, hide: str | None = None, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.buffer: deque[Text] = deque(maxlen=max_lines)
        """Every kept event as one line, for the filter to choose from again."""
        self.hide = hide
        """Log lines containing this are left out: the web daemon's access-log lines of the
        dashboard's own requests, which would otherwise fill the pane every refresh."""
        self.following = True
        self._filter = ""
        self._rows: deque[Text] = deque(maxlen=max_lines)
        """The screen rows shown: the matching lines, folded."""
        self._dropped = 0
        """Rows that fell off the top: row ``n`` of all time is ``_rows[n - _dropped]``."""
        self._strips: dict[int, Strip] = {}
        self._wide = 0

    def add_events(self, events: Iterable[Event]) -> None:
        lines = [
            render_event(e)
            for e in events
            if not (self.hide and isinstance(e, LogLine) and self.hide in e.text)
        ]
        self.buffer.extend(lines)
        self._add_rows(line for line in lines if self._matches(line))

    def set_filter(self, text: str) -> None:
        self._filter = text.strip().lower()
        self._rows.clear()
        self._strips.clear()
        self._dropped = 0
        self._wide = 0
        self._add_rows(line for line in self.buffer if self._matches(line))

    def _matches(self, line: Text) -> bool:
        return not self._filter or self._filter in line.plain.lower()

    def _add_rows(self, lines: Iterable[Text]) -> None:
        width = self.scrollable_content_region.width or 78
        before = len(self._rows)
        added = 0
        for line in lines:
            for row in self._fold(line, width):
                if len(self._rows) == self._rows.maxlen:
                    self._strips.pop(self._dropped, None)
                    self._dropped += 1
                self._rows.append(row)
                self._wide = max(self._wide, row.cell_len)
                added += 1
        if not added and before:
            return
        self.virtual_size = Size(self._wide, len(self._rows))
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def _fold(self, line: Text, width: int) -> list[Text]:
        if line.cell_len <= width or width <= _INDENT + 10:
            return [line]
        parts = line.wrap(self.app.console, width - _INDENT, overflow="fold")
        return [
            part if not index else Text(" " * _INDENT) + part for index, part in enumerate(parts)
        ]

    @property
    def line_count(self) -> int:
        return len(self._rows)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        index = scroll_y + y
        style = self.rich_style
        if index >= len(self._rows):
            return Strip.blank(width, style)
        number = self._dropped + index
        strip = self._strips.get(number)
        if strip is None:
            strip = Strip(list(self._rows[index].render(self.app.console, end="")))
            self._strips[number] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, style).apply_style(style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def on_show(self) -> None:
        if self.following:  # lines that came while hidden: show the newest
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        # Scrolling up pauses following; scrolling back to the end resumes it.
        self.following = new >= self.max_scroll_y

    def action_toggle_follow(self) -> None:
        self.following = not self.following
        if self.following:
            self.scroll_end(animate=False)
        self.notify("following the log" if self.following else "log paused (f follows again)")


def _name_style(name: str) -> str:
    return _NAME_COLOURS[zlib.crc32(name.encode()) % len(_NAME_COLOURS)]


def render_event(event: Event) -> Text:
    """One event as one line: time, process, what happened (log text never parsed as markup)."""
    text = Text(fmt.clock(event.at) + " ", style="dim")
    if isinstance(event, Notice):
        text.append("opsctl  ", style="bold")
        text.append(event.text, style="bold")
        return text
    text.append(event.process.ljust(10) + " ", style=_name_style(event.process))
    if isinstance(event, LogLine):
        # A daemon's text log starts with its own time of day: ours is already there.
        text.append(_OWN_TIME.sub("", event.text, count=1))
    elif isinstance(event, ProcessStarted):
        text.append(f"started (pid {event.pid})", style="green")
    elif isinstance(event, ProcessExited):
        how = "stopped" if event.requested else "exited"
        style = "dim" if event.requested else "bold red"
        text.append(
            f"{how}: {describe_exit(event.returncode)} after {fmt.age(event.uptime_s)}"
            f" (pid {event.pid})",
            style=style,
        )
    elif isinstance(event, ProcessRestarting):
        text.append(
            f"restarting in {event.delay_s:.1f}s (crash {event.attempt} in a row)", style="yellow"
        )
    elif isinstance(event, ProcessFailed):
        text.append(f"FAILED, left stopped: {event.reason}", style="bold red")
    return text
