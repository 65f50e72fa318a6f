"""The supervisor's processes: state coloured, pid, uptime, restarts, CPU, memory, jobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from opsctl.supervisor.core import ProcessInfo
from opsctl.tui import format as fmt
from opsctl.tui.messages import ProcessActionRequested
from opsctl.tui.widgets._table import DashTable, Row


class ProcessTable(DashTable):
    """``r`` restarts and ``s`` stops the selected process (after a y/n dialog)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "act('restart')", "Restart"),
        Binding("s", "act('stop')", "Stop"),
    ]
    COLUMNS = (
        ("PROCESS", None),
        ("STATE", None),
        ("PID", None),
        ("UPTIME", None),
        ("RESTARTS", None),
        ("CPU", None),
        ("MEMORY", None),
        ("JOBS", None),
    )
    DEFAULT_CSS = """
    ProcessTable { height: auto; max-height: 14; }
    """

    def __init__(self, *, read_only: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.read_only = read_only
        self.infos: dict[str, ProcessInfo] = {}

    def show_processes(
        self, processes: Sequence[ProcessInfo], in_flight: Mapping[int, int]
    ) -> None:
        """``in_flight`` maps a pid to the jobs its heartbeat reports running."""
        self.infos = {info.name: info for info in processes}
        self.show([_row(info, in_flight) for info in processes])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "act":
            return not self.read_only
        return True

    def action_act(self, op: str) -> None:
        name = self.selected_key
        if name is None or self.read_only or op not in ("restart", "stop"):
            return
        self.post_message(ProcessActionRequested("restart" if op == "restart" else "stop", name))


def _row(info: ProcessInfo, in_flight: Mapping[int, int]) -> Row:
    jobs = in_flight.get(info.pid) if info.pid else None
    restarts = Text(str(info.restarts), style="yellow" if info.restarts else "")
    return (
        info.name,
        (
            info.name,
            fmt.styled(info.state, fmt.STATE_STYLES),
            str(info.pid) if info.pid else "-",
            fmt.age(info.uptime_s),
            restarts,
            fmt.percent(info.cpu_percent),
            fmt.size(info.memory_bytes),
            "-" if jobs is None else str(jobs),
        ),
    )
