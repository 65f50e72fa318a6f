"""The process supervisor behind ``opsctl up``.

:mod:`~opsctl.supervisor.core` runs and restarts the children and emits typed events;
:mod:`~opsctl.supervisor.printer` renders them as prefixed log lines;
:mod:`~opsctl.supervisor.control` serves state and commands on a Unix socket;
:mod:`~opsctl.supervisor.runner` ties them to signals and exit codes.
"""

from __future__ import annotations

from opsctl.supervisor.control import SupervisorNotRunning, request, socket_path, status
from opsctl.supervisor.core import ProcessInfo, State, Supervisor, describe_exit
from opsctl.supervisor.events import (
    Event,
    LogLine,
    Notice,
    ProcessExited,
    ProcessFailed,
    ProcessRestarting,
    ProcessStarted,
    event_from_json,
    event_to_json,
)
from opsctl.supervisor.printer import Printer
from opsctl.supervisor.runner import check_port, default_program, run

__all__ = [
    "Event",
    "LogLine",
    "Notice",
    "Printer",
    "ProcessExited",
    "ProcessFailed",
    "ProcessInfo",
    "ProcessRestarting",
    "ProcessStarted",
    "State",
    "Supervisor",
    "SupervisorNotRunning",
    "check_port",
    "default_program",
    "describe_exit",
    "event_from_json",
    "event_to_json",
    "request",
    "run",
    "socket_path",
    "status",
]
