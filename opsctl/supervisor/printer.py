"""The log printer: renders supervisor events as ``HH:MM:SS worker.2 | …`` lines."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TextIO

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

SYSTEM = "system"
_RESET = "\033[0m"
_PALETTE = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_SYSTEM_COLOUR = "1"
_FAILED_COLOUR = "1;31"


class Printer:
    """A sink for :meth:`Supervisor.subscribe` that writes one line per event to ``out``.

    Colour goes only where ``colour`` is true (the caller decides: a terminal, and no
    ``NO_COLOR``). A write that fails (the reader went away) silences the printer rather than
    the supervisor.
    """

    def __init__(
        self,
        out: TextIO,
        names: Sequence[str],
        *,
        colour: bool = False,
        localtime: Callable[[float], time.struct_time] = time.localtime,
    ) -> None:
        self._out = out
        self._colour = colour
        self._localtime = localtime
        self._width = max([len(SYSTEM), *(len(n) for n in names)])
        self._colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}
        self._broken = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, LogLine):
            self._line(event.at, event.process, event.text, self._colours.get(event.process))
        else:
            colour = _FAILED_COLOUR if isinstance(event, ProcessFailed) else _SYSTEM_COLOUR
            self._line(event.at, SYSTEM, describe(event), colour)

    def _line(self, at: float, name: str, text: str, colour: str | None) -> None:
        if self._broken:
            return
        stamp = time.strftime("%H:%M:%S", self._localtime(at))
        prefix = f"{stamp} {name:<{self._width}} |"
        if self._colour and colour:
            prefix = f"\033[{colour}m{prefix}{_RESET}"
        try:
            self._out.write(f"{prefix} {text}\n")
            self._out.flush()
        except (OSError, ValueError):
            self._broken = True


def describe(event: Event) -> str:
    """One sentence for a lifecycle event (a log line is its own text)."""
    match event:
        case ProcessStarted(process=name, pid=pid):
            return f"{name} started (pid {pid})"
        case ProcessExited(process=name, returncode=rc, uptime_s=uptime, requested=requested):
            how = "stopped" if requested else "exited"
            return f"{name} {how} with {describe_exit(rc)} after {_duration(uptime)}"
        case ProcessRestarting(process=name, delay_s=delay, attempt=attempt):
            return f"{name} restarting in {delay:.3g} s (crash {attempt} in a row)"
        case ProcessFailed(process=name, reason=reason, config_error=True):
            ptype = name.rsplit(".", 1)[0]
            return (
                f"{name} failed: {reason}; not restarting it, as the same configuration"
                f" would fail again (fix the configuration, then run `opsctl up` again, or"
                f" `opsctl restart {ptype}` when the fix is in a file it reads)"
            )
        case ProcessFailed(process=name, reason=reason):
            return (
                f"{name} failed: {reason}; not restarting it"
                f" (fix the cause, then `opsctl restart {name}`)"
            )
        case Notice(text=text):
            return text
        case LogLine(text=text):
            return text
    raise TypeError(f"not a supervisor event: {event!r}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
