"""The supervisor's typed, frozen events: what the log printer and the dashboard both render."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ProcessStarted:
    """A child process was spawned."""

    kind: ClassVar[str] = "started"
    process: str
    pid: int
    at: float


@dataclass(frozen=True)
class ProcessExited:
    """A child ended; ``returncode`` is negative when a signal ended it (``-9`` for SIGKILL)."""

    kind: ClassVar[str] = "exited"
    process: str
    pid: int
    returncode: int
    uptime_s: float
    requested: bool
    at: float


@dataclass(frozen=True)
class ProcessRestarting:
    """A crashed child starts again after ``delay_s``; ``attempt`` counts crashes in a row."""

    kind: ClassVar[str] = "restarting"
    process: str
    delay_s: float
    attempt: int
    at: float


@dataclass(frozen=True)
class ProcessFailed:
    """A child is left stopped (FATAL) until restarted by hand: it crashed at start too often,
    or it exited with code 2 (``config_error``), which no restart can fix."""

    kind: ClassVar[str] = "failed"
    process: str
    reason: str
    at: float
    config_error: bool = False


@dataclass(frozen=True)
class LogLine:
    """One line a child wrote on stdout or stderr, without its newline."""

    kind: ClassVar[str] = "log"
    process: str
    text: str
    at: float


@dataclass(frozen=True)
class Notice:
    """Something the supervisor itself says (starting, stopping, escalating)."""

    kind: ClassVar[str] = "notice"
    text: str
    at: float


Event = ProcessStarted | ProcessExited | ProcessRestarting | ProcessFailed | LogLine | Notice

_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (ProcessStarted, ProcessExited, ProcessRestarting, ProcessFailed, LogLine, Notice)
}


def event_to_json(event: Event) -> dict[str, Any]:
    """``{"event": kind, …fields}``, the form the control endpoint streams."""
    return {"event": event.kind, **dataclasses.asdict(event)}


def event_from_json(data: dict[str, Any]) -> Event:
    """The inverse of :func:`event_to_json`; raises ValueError for an unknown or malformed one."""
    fields = dict(data)
    cls = _KINDS.get(str(fields.pop("event", "")))
    if cls is None:
        raise ValueError(f"unknown supervisor event {data.get('event')!r}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"malformed {cls.kind} event: {exc}") from None
