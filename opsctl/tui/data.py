"""What each pane shows: plain, frozen data, built by ``sources`` or by a test.

Every ``*Data`` carries an ``error`` sentence naming what is down when its source could not be
read; the pane shows it above whatever is still known.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from opsctl.queue import JobInfo
from opsctl.supervisor.core import ProcessInfo
from opsctl.verdict import CheckResult, QueueSnapshot, Status


@dataclass(frozen=True)
class ProcessesData:
    """The local supervisor's processes (``opsctl up``), or why they cannot be read."""

    processes: tuple[ProcessInfo, ...] = ()
    supervisor_pid: int | None = None
    supervisor_uptime_s: float | None = None
    error: str | None = None
    taken_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LimiterCounts:
    """What the shared rate limiter did for one connector (its counters beside the queue)."""

    admitted: int = 0
    delayed: int = 0
    refused: int = 0
    throttled: int = 0
    paused: int = 0
    paused_for_s: float = 0.0


@dataclass(frozen=True)
class QueueData:
    """One queue snapshot (counts and every heartbeat), the newest dead letters, and the
    rate limiter's counters per connector (empty when they could not be read)."""

    snapshot: QueueSnapshot
    dead: tuple[JobInfo, ...] = ()
    limiter: Mapping[str, LimiterCounts] = field(default_factory=dict, hash=False)

    @property
    def error(self) -> str | None:
        return self.snapshot.error


@dataclass(frozen=True)
class GateData:
    """One round of the deploy gate's checks against ``url`` (no canary)."""

    url: str
    checks: tuple[CheckResult, ...]
    status: Status
    taken_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Flag:
    name: str
    active: bool
    configured: bool | None = None


@dataclass(frozen=True)
class ReadinessCheck:
    name: str
    status: str
    output: str


@dataclass(frozen=True)
class HealthData:
    """``GET /api/health/features`` and the readiness endpoint, or why they cannot be read."""

    url: str
    environment: str | None = None
    flags: tuple[Flag, ...] = ()
    readiness_status: str | None = None
    readiness: tuple[ReadinessCheck, ...] = ()
    error: str | None = None
    web_down: bool = False
    """True when the web daemon did not answer at all (rather than answering with an error)."""


@dataclass(frozen=True)
class ConnectorRow:
    """One connector as ``GET /api/connectors`` describes it."""

    id: str
    stage: str | None
    stage_source: str
    version: str | None = None
    auth: str | None = None
    valid: bool = True
    client_required: bool = False
    client_registered: bool = False
    drift: bool = False
    display_name: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectorsData:
    rows: tuple[ConnectorRow, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class RateLimitRow:
    """One policy of one connector: the vendor limit, the safe fleet figures, live counts."""

    connector: str
    policy: str
    kind: str
    limit: str
    fleet: str
    per_process: str
    warnings: tuple[str, ...] = ()
    scope: str = ""


@dataclass(frozen=True)
class RateLimitsData:
    rows: tuple[RateLimitRow, ...] = ()
    topology: str = ""
    error: str | None = None


@dataclass(frozen=True)
class ActionOutcome:
    """What a process or dead-letter action did, for a notification."""

    ok: bool
    text: str


@dataclass(frozen=True)
class Condition:
    name: str
    status: str
    reason: str


@dataclass(frozen=True)
class StageOutcome:
    """The answer to a promote or demote: changed, unchanged, refused (with the conditions)
    or an error sentence."""

    connector_id: str
    verb: Literal["promote", "demote"]
    outcome: Literal["changed", "unchanged", "refused", "error"]
    before: str | None = None
    after: str | None = None
    conditions: tuple[Condition, ...] = ()
    error: str | None = None

    @property
    def summary(self) -> str:
        if self.outcome == "changed":
            return f"{self.verb}d {self.connector_id}: {self.before} → {self.after}"
        if self.outcome == "unchanged":
            return f"{self.connector_id} is already {self.after}"
        if self.outcome == "refused":
            unmet = sum(1 for c in self.conditions if c.status == "fail")
            return (
                f"refused: {self.connector_id} stays {self.before or 'unregistered'}; "
                f"{self.after} needs every condition below ({unmet} unmet)"
            )
        return f"could not {self.verb} {self.connector_id}: {self.error}"
