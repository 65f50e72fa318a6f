"""The Processes pane: the local supervisor's processes, then heartbeats from elsewhere."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical

from opsctl.tui import format as fmt
from opsctl.tui.data import ProcessesData
from opsctl.tui.widgets._table import DashTable
from opsctl.tui.widgets.heartbeat_table import HeartbeatTable
from opsctl.tui.widgets.line import Line
from opsctl.tui.widgets.notice import Notice
from opsctl.tui.widgets.process_table import ProcessTable
from opsctl.verdict import QueueSnapshot


class ProcessesPane(Vertical):
    """Joins the supervisor's snapshot with the queue's heartbeats: a heartbeat whose
    ``host:pid`` is a supervised process gives that row its in-flight jobs; the others are
    listed below it (workers on other machines, or started by hand)."""

    DEFAULT_CSS = """
    ProcessesPane .caption { color: $text-muted; padding: 0 1; height: 1; }
    ProcessesPane #process-detail { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, *, hostname: str, read_only: bool = False) -> None:
        super().__init__(id="processes-pane")
        self.hostname = hostname
        self.read_only = read_only
        self.data = ProcessesData()
        self.snapshot: QueueSnapshot | None = None
        self._former_pids: set[int] = set()
        """Pids supervised here earlier: their lingering heartbeats are the restarted rows'."""

    def compose(self) -> ComposeResult:
        yield Notice(id="supervisor-notice")
        yield ProcessTable(read_only=self.read_only, id="processes")
        yield Line("", id="process-detail")
        yield Line("heartbeats not supervised here", classes="caption", id="fleet-caption")
        yield Notice(id="fleet-notice")
        yield HeartbeatTable(id="heartbeats")

    def remember_processes(self, data: ProcessesData) -> None:
        """Keep the supervisor's snapshot (cheap: call it on every refresh, shown or not)."""
        self.data = data
        self._former_pids |= {p.pid for p in data.processes if p.pid}

    def remember_fleet(self, snapshot: QueueSnapshot) -> None:
        self.snapshot = snapshot

    def show_processes(self, data: ProcessesData) -> None:
        self.remember_processes(data)
        self.draw()

    def show_fleet(self, snapshot: QueueSnapshot) -> None:
        self.remember_fleet(snapshot)
        self.draw()

    def draw(self) -> None:
        """Render what was remembered last."""
        self.query_one("#supervisor-notice", Notice).say(self.data.error)
        pids = {p.pid for p in self.data.processes if p.pid}
        in_flight: dict[int, int] = {}
        others = []
        views = self.snapshot.processes if self.snapshot else ()
        for view in views:
            host, _, pid_text = view.heartbeat.id.rpartition(":")
            pid = int(pid_text) if pid_text.isdigit() else -1
            if host != self.hostname:
                others.append(view)
            elif pid in pids:
                if view.live:
                    in_flight[pid] = view.heartbeat.in_flight
            elif pid not in self._former_pids:
                others.append(view)
        self.query_one(ProcessTable).show_processes(self.data.processes, in_flight)
        table = self.query_one(HeartbeatTable)
        table.show_heartbeats(others)
        table.display = bool(others)
        fleet_error = self.snapshot.error if self.snapshot else None
        self.query_one("#fleet-notice", Notice).say(
            f"heartbeats unknown: {fleet_error}" if fleet_error else None
        )
        caption = "heartbeats not supervised here (other machines, other shells)"
        if self.snapshot is not None and not others and not fleet_error:
            caption = "heartbeats not supervised here: none"
        self.query_one("#fleet-caption", Line).show(caption)
        self._describe_selected()

    def on_dash_table_row_highlighted(self, event: DashTable.RowHighlighted) -> None:
        if isinstance(event.table, ProcessTable):
            self._describe_selected()

    def _describe_selected(self) -> None:
        table = self.query_one(ProcessTable)
        info = table.infos.get(table.selected_key or "")
        detail = self.query_one("#process-detail", Line)
        if info is None:
            up = self.data.supervisor_uptime_s
            detail.show(
                f"supervisor pid {self.data.supervisor_pid}, up {fmt.age(up)}"
                if self.data.supervisor_pid
                else ""
            )
            return
        parts = [f"{info.name}: {info.state}"]
        if info.port:
            parts.append(f"port {info.port}")
        if info.reason:
            parts.append(info.reason)
        elif info.exit_code is not None:
            parts.append(f"last exit {info.exit_code}")
        if self.data.supervisor_pid:
            parts.append(f"supervisor pid {self.data.supervisor_pid}")
        detail.show(" · ".join(parts))
