"""The job queue's contract: the types and the interface both backends implement.

Semantics: at-least-once. A job is never removed before it is acknowledged.
``reserve`` hands out jobs under a lease that the worker renews; a lease that lapses puts the
job back (``requeue_expired``). Each reservation gets a new fencing ``token``; ``complete``,
``fail``, ``defer``, ``renew`` and ``release`` act only when the token is still the job's current
one, so a late finisher cannot overwrite the new owner's result. ``fail`` with a ``retry_at``
sends the job through the delayed set; past ``max_attempts`` (or with ``retry_at=None``) it goes
to the dead set with its reason stored. ``defer`` sends it through the delayed set without
counting the run, so a job that must wait (a vendor's rate limit) is never dead-lettered for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from opsctl.errors import QueueError

JobStatus = Literal["ready", "delayed", "active", "done", "dead"]
FailOutcome = Literal["retry", "dead", "stale"]
DeferOutcome = Literal["deferred", "stale"]


def check_positive(name: str, value: float) -> None:
    """A limit, lease or TTL given to a backend: a finite number above zero, else QueueError."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise QueueError(f"{name} must be a positive number, got {value!r}")


def check_process_ids(process_ids: Sequence[str]) -> list[str]:
    """Process ids given to a backend, each once in the order given; raises QueueError for
    anything that is not text a backend can store (a lone surrogate has no UTF-8 form)."""
    out: dict[str, None] = {}
    for process_id in process_ids:
        if not isinstance(process_id, str):
            raise QueueError(f"a process id is text like host:pid, got {process_id!r}")
        try:
            process_id.encode()
        except UnicodeEncodeError:
            raise QueueError(f"the process id {process_id!r} is not valid Unicode text") from None
        out[process_id] = None
    return list(out)


def new_job_id() -> str:
    import uuid  # on first use: the deploy gate, which names its canary itself, never needs it

    return uuid.uuid4().hex


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue. ``payload`` must be JSON-serialisable."""

    kind: str
    payload: Any = None
    delay_s: float | None = None
    run_at: float | None = None
    idempotency_key: str | None = None
    max_attempts: int | None = None
    job_id: str | None = None
    """An explicit id; enqueueing an id that exists returns it without a second job."""


@dataclass(frozen=True)
class Job:
    """A reserved job, as a worker holds it."""

    id: str
    kind: str
    payload: Any
    queue: str
    attempt: int
    """1 on the first run; counts runs that ended (failed, lapsed), not releases or defers."""
    max_attempts: int
    token: int
    """Fencing token of this reservation; every reservation of the job gets a larger one."""
    enqueued_at: float
    """When the job was created (the backend's clock: Redis TIME, or time.time() for SQLite)."""
    lease_until: float


@dataclass(frozen=True)
class JobInfo:
    """A job as ``get`` and ``dead`` show it."""

    id: str
    kind: str
    payload: Any
    queue: str
    status: JobStatus
    attempts: int
    max_attempts: int
    created_at: float
    run_at: float | None = None
    started_at: float | None = None
    """When the latest reservation began (backend clock), for enqueue-to-start latency."""
    finished_at: float | None = None
    last_error: str | None = None
    """Why the latest failed or lapsed run ended."""
    result: Any = None
    deferred_reason: str | None = None
    """Why the latest ``defer`` put the job off (kept apart from failures' ``last_error``)."""


@dataclass(frozen=True)
class QueueStats:
    backend: Literal["redis", "sqlite"]
    waiting: int
    delayed: int
    active: int
    failed: int
    """Jobs in the dead-letter set."""
    oldest_waiting_age_s: float
    completed_last_minute: int
    delayed_due: int = 0
    """Delayed jobs whose run time has come: a timers daemon (or a worker's maintenance) moves
    them to ready within a second or two, so a count that stays up means nothing promotes."""
    oldest_due_age_s: float = 0.0
    """How far past its run time the most overdue delayed job is (0 when none is due)."""


@dataclass(frozen=True)
class Heartbeat:
    """What a process says about itself; written under its own key with a short TTL."""

    id: str
    """``host:pid``"""
    role: str
    started_at: float
    in_flight: int = 0
    processed: int = 0
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeartbeatView:
    """A heartbeat as a reader sees it."""

    heartbeat: Heartbeat
    last_seen: float
    age_s: float
    live: bool


class QueueBackend(Protocol):
    """One queue on one backend. Every method is safe to call from many processes at once."""

    backend: Literal["redis", "sqlite"]
    queue: str

    async def enqueue(self, job: NewJob) -> str:
        """Add one job; return its id (the existing id for a repeated idempotency key/id)."""

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[str]:
        """Add many jobs in as few round trips as the backend allows."""

    async def reserve(
        self, count: int, *, owner: str, lease_s: float, wait_s: float = 0.0
    ) -> list[Job]:
        """Take up to ``count`` ready jobs under a lease; wait up to ``wait_s`` for the first."""

    async def renew(self, jobs: Sequence[Job], *, lease_s: float) -> list[str]:
        """Extend the leases; return the ids whose lease was lost (token no longer current)."""

    async def complete(self, outcomes: Sequence[tuple[Job, Any]]) -> list[bool]:
        """Acknowledge jobs with their results; False for each stale token (nothing written)."""

    async def fail(self, job: Job, error: str, *, retry_at: float | None) -> FailOutcome:
        """Record a failed run: retry at ``retry_at``, or dead-letter past the attempt limit
        or when ``retry_at`` is None; ``stale`` when the token is no longer current."""

    async def defer(self, job: Job, *, run_at: float, reason: str | None = None) -> DeferOutcome:
        """Put a reserved job back in the delayed set until ``run_at`` without counting the run
        (like ``release``, but later): ``stale`` when the token is no longer current (nothing
        changed)."""

    async def release(self, jobs: Sequence[Job]) -> None:
        """Put unfinished jobs back at the front of the ready queue; the run does not count."""

    async def promote_due(self, limit: int = 1000) -> int:
        """Move delayed jobs whose time has come to ready; return how many moved."""

    async def requeue_expired(self, limit: int = 1000) -> int:
        """Put jobs whose lease lapsed back to ready (or dead past the limit)."""

    async def stats(self) -> QueueStats: ...

    async def get(self, job_id: str) -> JobInfo | None: ...

    async def dead(self, limit: int = 100) -> list[JobInfo]:
        """Dead-lettered jobs, newest first."""

    async def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        """Move dead jobs (all, or these) back to ready with a fresh attempt count."""

    async def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead jobs (all, or these) for good."""

    async def beat(self, heartbeat: Heartbeat, *, ttl_s: float) -> None:
        """Write this process's heartbeat under its own key."""

    async def remove_heartbeat(self, process_id: str) -> None:
        """Delete a heartbeat (on clean exit)."""

    async def forget_heartbeats(
        self, process_ids: Sequence[str], *, only_stale: bool = False
    ) -> list[str]:
        """Forget processes: each one's heartbeat, index entry and last record. Returns the ids
        that were known and are forgotten, in the order given; an unknown id changes nothing.
        With ``only_stale``, a process whose heartbeat has not lapsed is kept (checked at the
        moment of forgetting, so a process that came back is never dropped by mistake)."""

    async def heartbeats(self, *, ttl_s: float) -> list[HeartbeatView]:
        """Every process seen recently: live ones, and stale ones whose key lapsed."""

    async def ping(self) -> float:
        """Seconds for one round trip to the backend."""

    async def close(self) -> None: ...
