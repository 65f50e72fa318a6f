"""The connector registry: stage and where it comes from, version, client; ``p``/``d`` act."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from opsctl.tui import format as fmt
from opsctl.tui.data import ConnectorRow
from opsctl.tui.messages import StageChangeRequested
from opsctl.tui.widgets._table import DashTable, Row


class ConnectorTable(DashTable):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "stage('promote')", "Promote"),
        Binding("d", "stage('demote')", "Demote"),
    ]
    COLUMNS = (
        ("CONNECTOR", None),
        ("STAGE", None),
        ("FROM", None),
        ("VERSION", None),
        ("AUTH", None),
        ("CLIENT", None),
        ("NOTES", None),
    )
    DEFAULT_CSS = """
    ConnectorTable { height: 1fr; }
    """

    def __init__(self, *, read_only: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.read_only = read_only
        self.connectors: dict[str, ConnectorRow] = {}

    def show_connectors(self, rows: Sequence[ConnectorRow]) -> None:
        self.connectors = {row.id: row for row in rows}
        self.show([_row(row) for row in rows])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stage":
            return not self.read_only
        return True

    def action_stage(self, verb: str) -> None:
        key = self.selected_key
        if key is None or self.read_only or verb not in ("promote", "demote"):
            return
        self.post_message(StageChangeRequested("promote" if verb == "promote" else "demote", key))


def _row(c: ConnectorRow) -> Row:
    if not c.client_required:
        client = Text("-", style="dim")
    elif c.client_registered:
        client = Text("yes", style="green")
    else:
        client = Text("no", style="yellow")
    notes = []
    if c.drift:
        notes.append("drift")
    if not c.valid:
        notes.append("invalid")
    return (
        c.id,
        (
            c.id,
            fmt.styled(c.stage or "-", fmt.STAGE_STYLES),
            c.stage_source,
            c.version or "-",
            c.auth or "-",
            client,
            Text(", ".join(notes), style="yellow"),
        ),
    )
