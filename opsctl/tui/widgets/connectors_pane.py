"""The Connectors pane: the registry's stages and clients; promote and demote."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical

from opsctl.tui.data import ConnectorsData
from opsctl.tui.widgets._table import DashTable
from opsctl.tui.widgets.connector_table import ConnectorTable
from opsctl.tui.widgets.line import Line
from opsctl.tui.widgets.notice import Notice


class ConnectorsPane(Vertical):
    DEFAULT_CSS = """
    ConnectorsPane #connector-detail { height: auto; max-height: 4; padding: 0 1; }
    """

    def __init__(self, *, read_only: bool = False) -> None:
        super().__init__(id="connectors-pane")
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        yield Notice(id="connectors-notice")
        yield ConnectorTable(read_only=self.read_only, id="connectors")
        yield Line("", id="connector-detail")

    def show_connectors(self, data: ConnectorsData) -> None:
        self.query_one(Notice).say(data.error)
        if data.error is None or data.rows:
            self.query_one(ConnectorTable).show_connectors(data.rows)
        self._describe_selected()

    def on_dash_table_row_highlighted(self, event: DashTable.RowHighlighted) -> None:
        self._describe_selected()

    def _describe_selected(self) -> None:
        table = self.query_one(ConnectorTable)
        row = table.connectors.get(table.selected_key or "")
        detail = self.query_one("#connector-detail", Line)
        if row is None:
            detail.show("")
            return
        name = row.display_name or row.id
        lines = [f"{name}: {row.stage or 'no stage'} (from the {row.stage_source})"]
        lines += [f"⚠ {w}" for w in row.warnings]
        if not self.read_only:
            lines[0] += "  ·  p promote  d demote"
        detail.show("\n".join(lines))
