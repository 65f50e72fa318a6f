"""The vocabulary of every check, and the queue's verdict from one snapshot of it.

Pure functions on the standard library: the web daemon's endpoints, ``opsctl check`` and the
deploy gate judge a queue the same way, and the gate does it without importing asyncio.
:mod:`opsctl.health` re-exports all of it beside the checks that need a connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opsctl.queue.base import HeartbeatView, QueueStats
    from opsctl.settings import Settings

Status = Literal["pass", "warn", "fail"]
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    reason: str
    observed: Any = None
    unit: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    checked_at: float = field(default_factory=time.time)

    def to_json(self, *, detailed: bool) -> dict[str, Any]:
        """The IETF-style object; values and details only for an authenticated caller."""
        body: dict[str, Any] = {"status": self.status, "output": self.reason}
        if detailed:
            if self.observed is not None:
                body["observedValue"] = self.observed
            if self.unit:
                body["observedUnit"] = self.unit
            body.update(self.details)
            body["time"] = iso_time(self.checked_at)
        return body


def iso_time(epoch: float) -> str:
    """``2026-11-29T02:41:58Z``: UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def worst(statuses: Iterable[Status]) -> Status:
    """The overall status: the worst of its parts (``pass`` when there are none)."""
    return max(statuses, key=_RANK.__getitem__, default="pass")


@dataclass(frozen=True)
class QueueSnapshot:
    """One read of the queue's state, shared by every check and body built from it."""

    backend: str
    stats: QueueStats | None = None
    processes: tuple[HeartbeatView, ...] = ()
    rtt_s: float | None = None
    error: str | None = None
    taken_at: float = field(default_factory=time.time)
    rate_limits: dict[str, Any] | None = None
    """The shared rate limiter's counters per connector (``None``: not read)."""

    @property
    def workers(self) -> list[HeartbeatView]:
        return [p for p in self.processes if p.heartbeat.role == "worker"]


def queue_checks(snapshot: QueueSnapshot, *, drain_threshold_s: float) -> list[CheckResult]:
    """``queue`` reachable, ``workers`` alive, ``draining``, ``dead_letters`` (warn only)."""
    at = snapshot.taken_at
    if snapshot.stats is None:
        reason = snapshot.error or "queue state unknown"
        return [
            CheckResult(
                "queue", "fail", reason, details={"backend": snapshot.backend}, checked_at=at
            )
        ]
    stats = snapshot.stats
    rtt_ms = round((snapshot.rtt_s or 0.0) * 1000, 2)
    results = [
        CheckResult(
            "queue",
            "pass",
            f"{snapshot.backend} queue reachable",
            rtt_ms,
            "ms",
            {"backend": snapshot.backend},
            at,
        )
    ]
    live = [w for w in snapshot.workers if w.live]
    stale = [w for w in snapshot.workers if not w.live]
    if not live:
        why = "no worker heartbeat is fresh"
        if stale:
            why += f" ({len(stale)} stale, last seen {min(w.age_s for w in stale):.0f} s ago)"
        results.append(
            CheckResult(
                "workers",
                "fail",
                why + "; start a worker: opsctl daemon worker",
                0,
                "workers",
                checked_at=at,
            )
        )
    elif stale:
        results.append(
            CheckResult(
                "workers",
                "warn",
                f"{len(live)} worker(s) alive, {len(stale)} stale",
                len(live),
                "workers",
                checked_at=at,
            )
        )
    else:
        results.append(
            CheckResult(
                "workers",
                "pass",
                f"{len(live)} worker(s) alive",
                len(live),
                "workers",
                checked_at=at,
            )
        )
    age = round(stats.oldest_waiting_age_s, 3)
    if stats.waiting and age > drain_threshold_s:
        results.append(
            CheckResult(
                "draining",
                "fail",
                f"oldest waiting job is {age:.0f} s old "
                f"(threshold {drain_threshold_s:.0f} s): the queue stopped draining",
                age,
                "s",
                checked_at=at,
            )
        )
    else:
        results.append(
            CheckResult(
                "draining",
                "pass",
                f"{stats.waiting} waiting, oldest {age:.1f} s",
                age,
                "s",
                checked_at=at,
            )
        )
    if stats.failed:
        results.append(
            CheckResult(
                "dead_letters",
                "warn",
                f"{stats.failed} dead-lettered job(s); see opsctl queue dead",
                stats.failed,
                "jobs",
                checked_at=at,
            )
        )
    else:
        results.append(
            CheckResult("dead_letters", "pass", "no dead-lettered jobs", 0, "jobs", checked_at=at)
        )
    return results


def heartbeat_body(
    snapshot: QueueSnapshot, results: list[CheckResult], *, detailed: bool
) -> dict[str, Any]:
    """The public heartbeat contract (DESIGN.md §4); queue and worker details with the token."""
    status = worst(r.status for r in results)
    reasons = [f"{r.name}: {r.reason}" for r in results if r.status != "pass"]
    body: dict[str, Any] = {
        "status": {"status": status, "reasons": reasons, "checkedAt": iso_time(snapshot.taken_at)}
    }
    if not detailed:
        return body
    stats = snapshot.stats
    body["queue"] = {
        "backend": snapshot.backend,
        "waiting": stats.waiting if stats else None,
        "delayed": stats.delayed if stats else None,
        "active": stats.active if stats else None,
        "failed": stats.failed if stats else None,
        "oldestWaitingAgeSeconds": round(stats.oldest_waiting_age_s, 3) if stats else None,
        "completedLastMinute": stats.completed_last_minute if stats else None,
    }
    workers = snapshot.workers
    body["workers"] = {
        "alive": sum(1 for w in workers if w.live),
        "stale": sum(1 for w in workers if not w.live),
        "items": [
            {
                "id": w.heartbeat.id,
                "live": w.live,
                "lastSeenSecondsAgo": round(w.age_s, 1),
                "inFlight": w.heartbeat.in_flight,
                "processed": w.heartbeat.processed,
                "version": w.heartbeat.version,
                "startedAt": iso_time(w.heartbeat.started_at),
            }
            for w in sorted(workers, key=lambda w: w.heartbeat.id)
        ],
    }
    if snapshot.rate_limits is not None:
        body["rateLimits"] = snapshot.rate_limits
    return body


def production_requirements(settings: Settings, results: list[CheckResult]) -> list[CheckResult]:
    """In production, the embedded SQLite database or queue turns its passing check into a fail."""
    if not settings.is_production:
        return results
    needs = {
        "database": (
            "sqlite",
            "the database is SQLite; production needs PostgreSQL (DATABASE_URL)",
        ),
        "queue": (
            "sqlite",
            "the queue is the embedded SQLite one; production needs Redis (QUEUE_REDIS_URL)",
        ),
    }
    out = []
    for result in results:
        rule = needs.get(result.name)
        if rule and result.status != "fail" and result.details.get("backend") == rule[0]:
            result = CheckResult(
                result.name,
                "fail",
                rule[1],
                result.observed,
                result.unit,
                result.details,
                result.checked_at,
            )
        out.append(result)
    return out


def checks_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """The checks as ``opsctl check queue --json`` and ``opsctl deploy-gate --json`` print them."""
    return [
        {
            "name": r.name,
            "status": r.status,
            "reason": r.reason,
            "observed": r.observed,
            "unit": r.unit,
        }
        for r in results
    ]
