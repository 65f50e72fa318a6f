"""Heartbeats of processes the local supervisor does not run: other machines, other shells."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from opsctl.queue import HeartbeatView
from opsctl.tui import format as fmt
from opsctl.tui.widgets._table import DashTable, Row


class HeartbeatTable(DashTable):
    COLUMNS = (
        ("HEARTBEAT", None),
        ("ROLE", None),
        ("STATE", None),
        ("LAST SEEN", None),
        ("JOBS", None),
        ("PROCESSED", None),
    )
    DEFAULT_CSS = """
    HeartbeatTable { height: 1fr; min-height: 3; }
    """

    def show_heartbeats(self, views: Sequence[HeartbeatView]) -> None:
        ordered = sorted(views, key=lambda v: (v.heartbeat.role, v.heartbeat.id))
        self.show([_row(view) for view in ordered])


def _row(view: HeartbeatView) -> Row:
    beat = view.heartbeat
    state = Text("live", style="green") if view.live else Text("stale", style="bold red")
    return (
        beat.id,
        (
            beat.id,
            beat.role,
            state,
            fmt.age(view.age_s) + " ago",
            str(beat.in_flight),
            f"{beat.processed:,}",
        ),
    )
