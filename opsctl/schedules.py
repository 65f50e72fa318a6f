"""Cron schedules kept in the database, and turning their due occurrences into jobs.

Each occurrence becomes a job with a deterministic id (``sched:<name>:<epoch>``), so several
schedulers side by side enqueue it once: the queue returns the existing job for a repeated id.
Only the latest due occurrence is considered, so a scheduler back from downtime enqueues at
most one missed occurrence per schedule, never a burst. A schedule can be paused (disabled)
and resumed; resuming counts from that moment, so what fell due while it was paused is not
enqueued at all. Cron times are UTC.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from opsctl.constants import DEFAULT_QUEUE, SCHEDULE_JOB_ID
from opsctl.errors import NotFound, OpsctlError, UsageError
from opsctl.queue.base import NewJob, QueueBackend
from opsctl.queue.kinds import check_kind_name
from opsctl.store.base import Queryable, Row, Store

log = logging.getLogger("opsctl.scheduler")

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_COLUMNS = (
    "name, cron, kind, payload, queue, enabled, created_at, last_occurrence, last_job_id,"
    " resumed_at"
)


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    kind: str
    payload: Any
    queue: str = DEFAULT_QUEUE
    enabled: bool = True
    created_at: float = 0.0
    last_occurrence: float | None = None
    """The latest occurrence enqueued (epoch seconds), None before the first."""
    last_job_id: str | None = None
    resumed_at: float | None = None
    """When the schedule was last resumed after a pause (epoch seconds)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "kind": self.kind,
            "payload": self.payload,
            "queue": self.queue,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "last_occurrence": self.last_occurrence,
            "last_job_id": self.last_job_id,
            "resumed_at": self.resumed_at,
            "next_occurrence": next_occurrence(self.cron, time.time()) if self.enabled else None,
        }


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"schedule name {name!r} is not valid",
            hint="use 1-100 letters, digits or '_.-', starting with a letter, digit or '_'",
        )
    return name


def check_cron(expression: str) -> str:
    """The expression, normalised, when croniter accepts it; else a UsageError saying why.

    Five fields (minute hour day month weekday), a sixth for seconds, or an ``@hourly`` alias.
    """
    expr = " ".join(expression.split())
    fields = len(expr.split(" "))
    if not expr or (not expr.startswith("@") and fields not in (5, 6)):
        raise UsageError(
            f"cron expression {expression!r} has {fields if expr else 0} field(s)",
            hint="use 5 fields (minute hour day month weekday), e.g. '*/5 * * * *', "
            "or 6 with seconds last",
        )
    try:
        croniter(expr, 0.0)
    except (ValueError, KeyError) as exc:  # CroniterError is a ValueError
        reason = str(exc).split("] ", 1)[-1].removeprefix("is ")
        raise UsageError(
            f"cron expression {expression!r} is not valid: {reason}",
            hint="e.g. '*/5 * * * *' for every five minutes",
        ) from None
    return expr


def parse_payload(text: str | None) -> Any:
    """A payload given as JSON text; a UsageError naming the position when it is malformed."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"payload is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint="""quote it for the shell, e.g. --payload '{"key": "value"}'""",
        ) from None


def dump_payload(payload: Any) -> str:
    try:
        return json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"payload is not JSON-serialisable: {exc}") from None


def latest_occurrence(cron: str, now: float) -> float:
    """The latest time at or before ``now`` that the expression names."""
    return float(croniter(cron, now + 1e-3).get_prev(float))


def next_occurrence(cron: str, now: float) -> float:
    return float(croniter(cron, now).get_next(float))


def occurrence_job_id(name: str, occurrence: float) -> str:
    return SCHEDULE_JOB_ID.format(name=name, occurrence=int(occurrence))


def _schedule(row: Row) -> Schedule:
    try:
        payload = json.loads(row["payload"])
    except (TypeError, ValueError):
        payload = None
    return Schedule(
        name=row["name"],
        cron=row["cron"],
        kind=row["kind"],
        payload=payload,
        queue=row["queue"],
        enabled=bool(row["enabled"]),
        created_at=float(row["created_at"]),
        last_occurrence=None if row["last_occurrence"] is None else float(row["last_occurrence"]),
        last_job_id=row["last_job_id"],
        resumed_at=None if row["resumed_at"] is None else float(row["resumed_at"]),
    )


def check_schedule(
    name: str, cron: str, kind: str, payload: Any = None, *, payload_text: str | None = None
) -> tuple[str, Any, str]:
    """Check every part of a new schedule, reporting all problems in one UsageError.

    Return the normalised cron expression, the payload (parsed from ``payload_text`` when
    given) and its JSON text.
    """
    problems: list[str] = []
    for check, value in ((check_name, name), (check_cron, cron), (check_kind_name, kind)):
        try:
            check(value)
        except OpsctlError as exc:
            problems.append(str(exc))
    text = ""
    try:
        if payload_text is not None:
            payload = parse_payload(payload_text)
        text = dump_payload(payload)
    except OpsctlError as exc:
        problems.append(str(exc))
    if problems:
        raise UsageError("; ".join(problems))
    return check_cron(cron), payload, text


async def add_schedule(
    store: Store,
    name: str,
    cron: str,
    kind: str,
    payload: Any = None,
    *,
    payload_text: str | None = None,
    queue: str = DEFAULT_QUEUE,
    clock: Callable[[], float] = time.time,
) -> Schedule:
    """Create a schedule. Every malformed part is reported at once (exit 2); a name already
    taken is an error of its own (exit 1)."""
    cron, payload, text = check_schedule(name, cron, kind, payload, payload_text=payload_text)
    schedule = Schedule(
        name=name, cron=cron, kind=kind, payload=payload, queue=queue, created_at=clock()
    )
    async with store.transaction() as tx:
        if await tx.fetchval("SELECT 1 FROM schedules WHERE name = $1", name):
            raise OpsctlError(
                f"schedule {name!r} already exists", hint="remove it first, or choose another name"
            )
        await tx.execute(
            f"INSERT INTO schedules ({_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, 1, $6, NULL, NULL, NULL)",
            schedule.name,
            schedule.cron,
            schedule.kind,
            text,
            schedule.queue,
            schedule.created_at,
        )
    return schedule


async def list_schedules(db: Queryable, *, enabled_only: bool = False) -> list[Schedule]:
    where = " WHERE enabled = 1" if enabled_only else ""
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM schedules{where} ORDER BY name")
    return [_schedule(row) for row in rows]


async def get_schedule(db: Queryable, name: str) -> Schedule:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM schedules WHERE name = $1", name)
    if row is None:
        raise NotFound(f"no schedule named {name!r}", hint="see: opsctl schedules list")
    return _schedule(row)


async def remove_schedule(db: Queryable, name: str) -> None:
    if not await db.execute("DELETE FROM schedules WHERE name = $1", name):
        raise NotFound(f"no schedule named {name!r}", hint="see: opsctl schedules list")


async def set_enabled(
    store: Store, name: str, enabled: bool, *, clock: Callable[[], float] = time.time
) -> tuple[Schedule, bool]:
    """Pause (``enabled=False``) or resume a schedule; return it and whether it changed.

    Resuming counts from now: the occurrences that fell due while it was paused are not
    enqueued, not even the latest (a scheduler back from downtime would enqueue that one).
    Pausing or resuming twice is not an error.
    """
    async with store.transaction() as tx:
        schedule = await get_schedule(tx, name)
        if schedule.enabled == enabled:
            return schedule, False
        if enabled:
            await tx.execute(
                "UPDATE schedules SET enabled = 1, resumed_at = $2 WHERE name = $1", name, clock()
            )
        else:
            await tx.execute("UPDATE schedules SET enabled = 0 WHERE name = $1", name)
        return await get_schedule(tx, name), True


@dataclass(frozen=True)
class Occurrence:
    schedule: str
    at: float
    job_id: str


QueueFor = Callable[[str], Awaitable[QueueBackend]]
_reported_bad: set[tuple[str, str]] = set()  # logged once per process, not every pass


async def enqueue_due(store: Store, queue_for: QueueFor, *, now: float) -> list[Occurrence]:
    """Enqueue the latest due occurrence of every enabled schedule; return those this call
    recorded (each occurrence is reported by one caller, however many run at once).

    ``queue_for(name)`` gives the backend of a queue. The occurrence's job id is
    deterministic, and a schedule's ``last_occurrence`` only moves forward, so running this
    from several schedulers at once enqueues each occurrence once.
    """
    enqueued: list[Occurrence] = []
    for schedule in await list_schedules(store, enabled_only=True):
        try:
            at = latest_occurrence(schedule.cron, now)
        except (ValueError, KeyError) as exc:  # edited by hand in the database
            if (schedule.name, schedule.cron) not in _reported_bad:
                _reported_bad.add((schedule.name, schedule.cron))
                log.error("schedule %r has a bad cron expression, skipped: %s", schedule.name, exc)
            continue
        since = schedule.last_occurrence
        if since is None:
            since = schedule.created_at
        if schedule.resumed_at is not None:
            since = max(since, schedule.resumed_at)
        if at <= since:
            continue
        job_id = occurrence_job_id(schedule.name, at)
        queue = await queue_for(schedule.queue)
        # Claim the occurrence, enqueue it, then commit: a scheduler that loses the claim
        # (another moved ``last_occurrence`` to it or past it) enqueues nothing and reports
        # nothing, and one that fails to enqueue rolls its claim back. Each occurrence is thus
        # reported by the one caller that enqueued it, even when a slow scheduler's claim
        # comes after a faster one's claim of the next occurrence. A crash between the enqueue
        # and the commit leaves the job for the next pass, whose enqueue of the same id adds
        # nothing.
        async with store.transaction() as tx:
            claimed = await tx.execute(
                "UPDATE schedules SET last_occurrence = $2, last_job_id = $3"
                " WHERE name = $1 AND (last_occurrence IS NULL OR last_occurrence < $2)",
                schedule.name,
                at,
                job_id,
            )
            if claimed:
                await queue.enqueue(
                    NewJob(kind=schedule.kind, payload=schedule.payload, job_id=job_id)
                )
        if claimed:
            enqueued.append(Occurrence(schedule.name, at, job_id))
    return enqueued
