"""The process topology: the one table that `opsctl up` and every generated manifest read.

Each row is a :class:`ProcessType`. Adding a daemon to the platform is one more row in
:data:`TOPOLOGY`; the supervisor, the Procfile, ecosystem.config.js, render.yaml and fly.toml
all pick it up from here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from opsctl.constants import (
    DEPLOY_GATE_TIMEOUT_S,
    KILL_GRACE_S,
    PRODUCTION_READY_PATH,
    ROTATION_DRAIN_DEADLINE_S,
    SCHEDULER_DRAIN_DEADLINE_S,
    TIMERS_DRAIN_DEADLINE_S,
    WEB_DRAIN_DEADLINE_S,
    WORKER_DRAIN_DEADLINE_S,
)
from opsctl.errors import UsageError

_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")

#: The program every command starts with; the supervisor resolves it to the installed script.
PROGRAM = "opsctl"

#: What a release phase runs before new code takes traffic (Procfile, Render, Fly).
RELEASE_COMMAND: tuple[str, ...] = (
    PROGRAM,
    "deploy-gate",
    "--timeout",
    str(DEPLOY_GATE_TIMEOUT_S),
)


@dataclass(frozen=True)
class ProcessType:
    """One kind of process: what runs it, how many, and how long it may take to stop."""

    name: str
    role: str
    instances: int
    drain_deadline_s: float
    kill_timeout_s: float
    serves_http: bool = False
    health_path: str | None = None
    argv: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"process type name {self.name!r} must match {_NAME.pattern}")
        if self.instances < 0:
            raise ValueError(f"{self.name}: instances must be at least 0")
        if not 0 < self.drain_deadline_s < self.kill_timeout_s:
            raise ValueError(
                f"{self.name}: kill timeout ({self.kill_timeout_s} s) must exceed the drain"
                f" deadline ({self.drain_deadline_s} s), or a draining process is killed"
            )
        if self.health_path is not None and not self.serves_http:
            raise ValueError(f"{self.name}: only a process that serves HTTP has a health path")
        if not self.argv:
            object.__setattr__(self, "argv", (PROGRAM, "daemon", self.name))

    @property
    def command(self) -> str:
        """The shell command line, as a Procfile or a platform's start command writes it."""
        return shlex.join(self.argv)


def daemon_type(
    name: str,
    role: str,
    *,
    drain_deadline_s: float,
    instances: int = 1,
    serves_http: bool = False,
    health_path: str | None = None,
) -> ProcessType:
    """A row for a bundled daemon run as ``opsctl daemon NAME``, with the standard kill margin."""
    return ProcessType(
        name=name,
        role=role,
        instances=instances,
        drain_deadline_s=drain_deadline_s,
        kill_timeout_s=drain_deadline_s + KILL_GRACE_S,
        serves_http=serves_http,
        health_path=health_path,
    )


#: The platform's process types (docs/deployment.md), in start order.
TOPOLOGY: tuple[ProcessType, ...] = (
    daemon_type(
        "web",
        "aiohttp API and health endpoints",
        drain_deadline_s=WEB_DRAIN_DEADLINE_S,
        serves_http=True,
        health_path=PRODUCTION_READY_PATH,
    ),
    daemon_type(
        "worker",
        "executes jobs; scale horizontally",
        drain_deadline_s=WORKER_DRAIN_DEADLINE_S,
        instances=2,
    ),
    daemon_type(
        "scheduler",
        "turns cron schedules into jobs; safe with several replicas",
        drain_deadline_s=SCHEDULER_DRAIN_DEADLINE_S,
    ),
    daemon_type(
        "timers",
        "moves due delayed jobs and retries into the ready queue",
        drain_deadline_s=TIMERS_DRAIN_DEADLINE_S,
    ),
    daemon_type(
        "encryption-rotation",
        "re-encrypts stored credentials to the active key",
        drain_deadline_s=ROTATION_DRAIN_DEADLINE_S,
    ),
)


@dataclass(frozen=True)
class RestartPolicy:
    """When and how fast a crashed process comes back (supervisord's BACKOFF → FATAL).

    Each crash in a row waits ``factor`` times longer than the one before, up to
    ``max_delay_s``; a run of ``stable_after_s`` or more starts the count afresh. A process that
    dies within ``start_seconds`` of starting, ``start_retries + 1`` times in a row, is marked
    failed and left alone until an operator restarts it.
    """

    initial_delay_s: float = 1.0
    factor: float = 1.5
    max_delay_s: float = 30.0
    start_seconds: float = 10.0
    start_retries: int = 3
    stable_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0 or self.factor < 1 or self.max_delay_s < self.initial_delay_s:
            raise ValueError("restart delays must start at 0 or more and never shrink")
        if self.start_retries < 0:
            raise ValueError("start_retries must be at least 0")

    def delay(self, crashes_in_row: int) -> float:
        """The wait before restart number ``crashes_in_row`` (1 for the first crash)."""
        growth = self.factor ** max(0, crashes_in_row - 1)
        return float(min(self.max_delay_s, self.initial_delay_s * growth))


RESTART_POLICY = RestartPolicy()


def by_name(table: Iterable[ProcessType]) -> dict[str, ProcessType]:
    """The table as a mapping from type name to row, in table order."""
    return {ptype.name: ptype for ptype in table}


def check_table(table: Sequence[ProcessType]) -> None:
    """Raise ValueError when names repeat or when more than one type serves HTTP."""
    names = [p.name for p in table]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"process types appear twice: {', '.join(duplicates)}")
    if sum(p.serves_http for p in table) > 1:
        raise ValueError("only one process type may bind PORT")


check_table(TOPOLOGY)


def _split(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def plan(
    table: Sequence[ProcessType],
    *,
    only: Iterable[str] = (),
    scale: Iterable[str] = (),
) -> dict[str, int]:
    """How many instances of each type to run: the table's defaults, narrowed and rescaled.

    ``only`` and ``scale`` take the command-line forms (``web,worker``; ``worker=3``), comma
    separated or repeated. Raises :class:`UsageError` for an unknown type, a malformed or
    negative count, a type scaled outside ``--only``, or a plan that runs nothing.
    """
    rows = by_name(table)
    known = ", ".join(rows)

    def check_name(name: str, option: str) -> None:
        if name not in rows:
            raise UsageError(f"unknown process type {name!r} in {option} (known: {known})")

    selected = _split(only)
    for name in selected:
        check_name(name, "--only")
    counts = {name: row.instances for name, row in rows.items() if not selected or name in selected}

    for item in _split(scale):
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(f"--scale takes TYPE=COUNT, got {item!r} (for example worker=3)")
        check_name(name, "--scale")
        try:
            count = int(raw.strip())
        except ValueError:
            raise UsageError(
                f"--scale {name} must be a whole number of instances, got {raw.strip()!r}"
            ) from None
        if count < 0:
            raise UsageError(f"--scale {name} cannot be negative, got {count}")
        if name not in counts:
            raise UsageError(f"--scale names {name!r}, which --only leaves out")
        counts[name] = count

    result = {name: count for name, count in counts.items() if count > 0}
    if not result:
        raise UsageError("nothing to run: every selected process type is scaled to 0")
    return result


def instance_names(counts: Mapping[str, int]) -> list[str]:
    """``{"web": 1, "worker": 2}`` → ``["web.1", "worker.1", "worker.2"]``."""
    return [f"{name}.{i}" for name, count in counts.items() for i in range(1, count + 1)]
