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

from opsctl.constants import HEARTBEAT_TTL_S, HEARTBEAT_WARN_TTLS

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
        """One element of the check's array in a health answer (draft-inadarei-api-health-check).

        ``output`` only when the check warns or fails, as the draft says. Without the operator
        token the element names its status and a generic output alone: reasons can carry
        paths, URLs, backend and connector names. With the token: the reason, the observed
        value and unit, the time of the reading and the check's details (which never replace
        a field of the draft).
        """
        if not detailed:
            if self.status == "pass":
                return {"status": self.status}
            return {"status": self.status, "output": _GENERIC_OUTPUT[self.status]}
        body: dict[str, Any] = dict(self.details)
        body["status"] = self.status
        if self.status != "pass":
            body["output"] = self.reason
        if self.name in _COMPONENT_TYPES:
            body["componentType"] = _COMPONENT_TYPES[self.name]
        if self.observed is not None:
            body["observedValue"] = self.observed
        if self.unit:
            body["observedUnit"] = self.unit
        body["time"] = iso_time(self.checked_at)
        return body


HEALTH_MEDIA_TYPE = "application/health+json"
"""The media type of every health answer (draft-inadarei-api-health-check)."""

_GENERIC_OUTPUT: dict[Status, str] = {
    "warn": "the check warns; the operator token shows why",
    "fail": "the check fails; the operator token shows why",
}
# The draft's componentType where it is plain: a store of data, or a system outside opsctl.
_COMPONENT_TYPES = {"database": "datastore", "queue": "datastore", "secrets": "system"}


def health_body(
    results: Sequence[CheckResult],
    *,
    detailed: bool,
    description: str,
    version: str | None = None,
) -> dict[str, Any]:
    """A readiness answer: ``{"status", "checks": {name: [element, ...]}, ...}`` in the draft's
    shape, every check an array (one element per reading; a name given twice gets two).

    The top-level ``output`` is there only on warn or fail: the names of the checks not passing
    (and, for an operator, their reasons). ``version`` is shown only to an operator.
    """
    status = worst(r.status for r in results)
    body: dict[str, Any] = {"status": status}
    if detailed and version:
        body["version"] = version
    body["serviceId"] = "opsctl-web"
    body["description"] = description
    failing = [r for r in results if r.status != "pass"]
    if failing:
        if detailed:
            body["output"] = "; ".join(f"{r.name}: {r.reason}" for r in failing)
        else:
            body["output"] = "not passing: " + ", ".join(f"{r.name} ({r.status})" for r in failing)
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        checks.setdefault(result.name, []).append(result.to_json(detailed=detailed))
    body["checks"] = checks
    body["checkedAt"] = iso_time(max((r.checked_at for r in results), default=time.time()))
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


SQLITE_DATABASE_REASON = "the database is SQLite; production needs PostgreSQL (DATABASE_URL)"
SQLITE_QUEUE_REASON = (
    "the queue is the embedded SQLite one; production needs Redis (QUEUE_REDIS_URL)"
)


def queue_checks(
    snapshot: QueueSnapshot,
    *,
    drain_threshold_s: float,
    production: bool = False,
    ttl_s: float = HEARTBEAT_TTL_S,
) -> list[CheckResult]:
    """The queue's verdict from one snapshot: must a deploy halt?

    ``queue`` (the backend answers; in ``production`` the embedded SQLite queue fails),
    ``workers`` (a live worker heartbeat), ``draining`` (no waiting job older than the
    threshold) and ``promotion`` (no due delayed job overdue by more than the threshold) fail
    exactly when it must. Only a condition that clears by itself warns: a stale worker beside
    live ones, until two heartbeat TTLs (``ttl_s``) after its last beat. ``dead_letters``
    always passes with the count: only an operator clears them.
    """
    at = snapshot.taken_at
    backend = {"backend": snapshot.backend}
    if snapshot.stats is None:
        reason = snapshot.error or "queue state unknown"
        return [CheckResult("queue", "fail", reason, details=backend, checked_at=at)]
    stats = snapshot.stats
    rtt_ms = round((snapshot.rtt_s or 0.0) * 1000, 2)
    if production and snapshot.backend == "sqlite":
        queue = CheckResult("queue", "fail", SQLITE_QUEUE_REASON, rtt_ms, "ms", backend, at)
    else:
        reachable = f"{snapshot.backend} queue reachable"
        queue = CheckResult("queue", "pass", reachable, rtt_ms, "ms", backend, at)
    return [
        queue,
        _workers_check(snapshot, ttl_s),
        _draining_check(stats, drain_threshold_s, at),
        _promotion_check(stats, drain_threshold_s, at),
        _dead_letters_check(stats, at),
    ]


def _workers_check(snapshot: QueueSnapshot, ttl_s: float) -> CheckResult:
    at = snapshot.taken_at
    live = [w for w in snapshot.workers if w.live]
    stale = [w for w in snapshot.workers if not w.live]
    counts = {"alive": len(live), "stale": len(stale)}
    if not live:
        why = "no worker heartbeat is fresh"
        if stale:
            why += f" ({len(stale)} stale, last seen {min(w.age_s for w in stale):.0f} s ago)"
        why += "; start a worker: opsctl daemon worker"
        return CheckResult("workers", "fail", why, 0, "workers", counts, at)
    # A worker killed beside others lapses: it warns while that is news, then is only listed.
    warn_until_s = HEARTBEAT_WARN_TTLS * ttl_s
    recent = [w for w in stale if w.age_s <= warn_until_s]
    alive = f"{len(live)} worker(s) alive"
    if recent:
        last = min(w.age_s for w in recent)
        reason = (
            f"{alive}, {len(recent)} stale (last beat {last:.0f} s ago;"
            f" this clears {warn_until_s:.0f} s after it)"
        )
        return CheckResult("workers", "warn", reason, len(live), "workers", counts, at)
    if stale:
        alive += f"; {len(stale)} stale listed until forgotten (opsctl workers forget --stale)"
    return CheckResult("workers", "pass", alive, len(live), "workers", counts, at)


def _draining_check(stats: QueueStats, threshold_s: float, at: float) -> CheckResult:
    age = round(stats.oldest_waiting_age_s, 3)
    if stats.waiting and age > threshold_s:
        reason = (
            f"oldest waiting job is {age:.0f} s old "
            f"(threshold {threshold_s:.0f} s): the queue stopped draining"
        )
        return CheckResult("draining", "fail", reason, age, "s", checked_at=at)
    reason = f"{stats.waiting} waiting, oldest {age:.1f} s"
    return CheckResult("draining", "pass", reason, age, "s", checked_at=at)


def _promotion_check(stats: QueueStats, threshold_s: float, at: float) -> CheckResult:
    due, overdue = stats.delayed_due, round(stats.oldest_due_age_s, 3)
    details = {"delayed": stats.delayed, "due": due}
    if due and overdue > threshold_s:
        reason = (
            f"{due} delayed job(s) due and not promoted, the oldest {overdue:.0f} s overdue:"
            " is a timers daemon running? opsctl daemon timers"
        )
        return CheckResult("promotion", "fail", reason, overdue, "s", details, at)
    if due:
        reason = f"{due} delayed job(s) due, the oldest {overdue:.1f} s overdue"
    else:
        reason = f"{stats.delayed} delayed, none due"
    return CheckResult("promotion", "pass", reason, overdue, "s", details, at)


def _dead_letters_check(stats: QueueStats, at: float) -> CheckResult:
    # Never a warning: a strict guard would block every deploy until someone purges them.
    if stats.failed:
        reason = f"{stats.failed} dead-lettered job(s); see opsctl queue dead"
    else:
        reason = "no dead-lettered jobs"
    return CheckResult("dead_letters", "pass", reason, stats.failed, "jobs", checked_at=at)


def heartbeat_checks(snapshot: QueueSnapshot, settings: Settings) -> list[CheckResult]:
    """What the queue heartbeat judges: :func:`queue_checks` with the settings' threshold and
    environment, and in production the database too (the embedded SQLite one fails)."""
    results = queue_checks(
        snapshot,
        drain_threshold_s=settings.drain_threshold_s,
        production=settings.is_production,
    )
    if settings.is_production and settings.database_backend == "sqlite":
        results.append(
            CheckResult(
                "database",
                "fail",
                SQLITE_DATABASE_REASON,
                details={"backend": "sqlite"},
                checked_at=snapshot.taken_at,
            )
        )
    return results


def heartbeat_body(
    snapshot: QueueSnapshot, results: list[CheckResult], *, detailed: bool
) -> dict[str, Any]:
    """The public heartbeat contract; queue and worker details only with the operator token.

    ``.status`` is ``{"status", "reasons", "checkedAt"}``: the worst of ``results`` and a
    ``name: reason`` line for each check not passing. Stale workers stay in ``workers.items``
    (``live: false``) until forgotten, whatever the status says.
    """
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
        "delayedDue": stats.delayed_due if stats else None,
        "oldestDueAgeSeconds": round(stats.oldest_due_age_s, 3) if stats else None,
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
    needs = {"database": SQLITE_DATABASE_REASON, "queue": SQLITE_QUEUE_REASON}
    out = []
    for result in results:
        reason = needs.get(result.name)
        if reason and result.status != "fail" and result.details.get("backend") == "sqlite":
            result = CheckResult(
                result.name,
                "fail",
                reason,
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
