"""The base of every dashboard table: a row cursor, vim keys, the ``/`` filter, cheap refreshes.

Built on Textual's line API rather than ``DataTable``: a DataTable re-renders every visible
cell after any change, while a dashboard changes a few cells every refresh. Here each row is
rendered once into a :class:`~textual.strip.Strip` and kept until its cells (or the column
widths) change, so a refresh costs the rows that changed, and drawing is cropping cached lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text
Row = tuple[str, tuple[Cell, ...]]
"""A row's key and its cells."""
_GAP = 2  # spaces between columns


@lru_cache(maxsize=16384)
def _text_of(value: str) -> Text:
    # Shared by every cell showing the same string; a Text given to the table is never changed.
    return Text(value)


def _text(cell: Cell) -> Text:
    """A cell as Text: a str is never parsed as markup ("[Errno 111]" in a reason is not a
    style)."""
    return cell if isinstance(cell, Text) else _text_of(cell)


class DashTable(ScrollView, can_focus=True):
    """A table fed whole snapshots with :meth:`show`; the cursor stays on its row's key."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "first", "First row", show=False),
        Binding("end,G", "last", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "dash-table--header",
        "dash-table--cursor",
        "dash-table--even-row",
    }
    DEFAULT_CSS = """
    DashTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        & > .dash-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .dash-table--even-row { background: $surface-lighten-1 50%; }
        & > .dash-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .dash-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """
    COLUMNS: ClassVar[tuple[tuple[str, int | None], ...]] = ()
    """(label, most cells wide or None for no limit) of each column."""

    class RowHighlighted(Message):
        """The cursor moved to another row (``key`` None: the table is empty)."""

        def __init__(self, table: DashTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> DashTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._all: list[tuple[str, tuple[Text, ...]]] = []
        self._rows: list[tuple[str, tuple[Text, ...]]] = []
        self._keys: list[str] = []
        self._filter = ""
        self._cursor = 0
        self._widths = [len(label) for label, _ in self.COLUMNS]
        self._strips: dict[str, tuple[tuple[Text, ...], Strip]] = {}
        self._header: Strip | None = None
        self._highlighted: str | None = None

    def on_mount(self) -> None:
        self.virtual_size = Size(sum(self._widths) + _GAP * len(self._widths), 1)

    # --- data ----------------------------------------------------------------------------

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        return self._keys[self._cursor] if self._keys else None

    @property
    def shown_keys(self) -> list[str]:
        return list(self._keys)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    def show(self, rows: Sequence[Row]) -> None:
        """Display ``rows`` (those matching the filter)."""
        self._all = [(key, tuple(_text(cell) for cell in cells)) for key, cells in rows]
        self._render_rows()

    def set_filter(self, text: str) -> None:
        self._filter = text.strip().lower()
        self._render_rows()

    def cell_text(self, key: str, column: int) -> str:
        """The plain text of one shown cell (for tests and details)."""
        return self._rows[self._keys.index(key)][1][column].plain

    def row_texts(self) -> list[str]:
        """Every shown row as one line of plain text, in order."""
        return [" ".join(cell.plain for cell in cells) for _, cells in self._rows]

    def _matches(self, key: str, cells: tuple[Text, ...]) -> bool:
        if not self._filter:
            return True
        return self._filter in key.lower() or any(
            self._filter in cell.plain.lower() for cell in cells
        )

    def _render_rows(self) -> None:
        selected = self.selected_key
        rows = [(key, cells) for key, cells in self._all if self._matches(key, cells)]
        if rows == self._rows:
            return
        self._rows = rows
        self._keys = [key for key, _ in rows]
        widths = [len(label) for label, _ in self.COLUMNS]
        for _, cells in rows:
            for index, cell in enumerate(cells):
                widths[index] = max(widths[index], cell.cell_len)
        widths = [
            min(width, limit) if limit else width
            for width, (_, limit) in zip(widths, self.COLUMNS, strict=True)
        ]
        if widths != self._widths:
            self._widths = widths
            self._strips.clear()
            self._header = None
        else:  # forget rows that are gone
            keep = set(self._keys)
            for key in [k for k in self._strips if k not in keep]:
                del self._strips[key]
        if selected in self._keys:
            self._cursor = self._keys.index(selected)
        else:
            self._cursor = min(self._cursor, max(0, len(rows) - 1))
        width = sum(widths) + _GAP * len(widths)
        self.virtual_size = Size(width, len(rows) + 1)
        self._announce()
        self.refresh()

    # --- drawing -------------------------------------------------------------------------

    def _line(self, cells: Sequence[Text]) -> Strip:
        console = self.app.console
        segments: list[Segment] = []
        for cell, width in zip(cells, self._widths, strict=True):
            rendered = list(cell.render(console, end=""))
            segments.append(Segment(" "))
            segments.extend(Segment.adjust_line_length(rendered, width, pad=True))
            segments.append(Segment(" " * (_GAP - 1)))
        return Strip(segments)

    def _row_strip(self, index: int) -> Strip:
        key, cells = self._rows[index]
        cached = self._strips.get(key)
        if cached is not None and cached[0] == cells:
            return cached[1]
        strip = self._line(cells)
        self._strips[key] = (cells, strip)
        return strip

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        base = self.rich_style
        if y == 0:
            if self._header is None:
                self._header = self._line([Text(label) for label, _ in self.COLUMNS])
            style = base + self.get_component_rich_style("dash-table--header")
            return self._header.crop_extend(scroll_x, scroll_x + width, style).apply_style(style)
        index = scroll_y + y - 1
        if index >= len(self._rows):
            return Strip.blank(width, base)
        style = base
        if index % 2:
            style += self.get_component_rich_style("dash-table--even-row")
        strip = self._row_strip(index).crop_extend(scroll_x, scroll_x + width, style)
        if index == self._cursor:
            cursor = self.get_component_rich_style("dash-table--cursor")
            return strip.apply_style(style + cursor)
        return strip.apply_style(style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # the theme changed: cells keep their own styles, but redraw
        self._header = None

    # --- the cursor ----------------------------------------------------------------------

    def _announce(self) -> None:
        key = self.selected_key
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(self.RowHighlighted(self, key))

    def move_cursor(self, row: int) -> None:
        if not self._rows:
            return
        self._cursor = max(0, min(row, len(self._rows) - 1))
        visible = max(1, self.scrollable_content_region.height - 1)
        top = self.scroll_offset.y
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False)
        elif self._cursor >= top + visible:
            self.scroll_to(y=self._cursor - visible + 1, animate=False)
        self._announce()
        self.refresh()

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self._cursor + step)

    def action_page(self, step: int) -> None:
        self.move_cursor(self._cursor + step * max(1, self.scrollable_content_region.height - 2))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._rows) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and offset.y >= 1:
            self.move_cursor(self.scroll_offset.y + offset.y - 1)
