"""What goes into and comes out of the Redis queue's Lua scripts, on the standard library alone.

Shared by the asyncio backend (:mod:`opsctl.queue._redis`) and the synchronous reader the
deploy gate uses (:mod:`opsctl.gate.reader`), both on redis-py, so both send the same arguments
and read the same replies.
"""

from __future__ import annotations

import json
import math
import time
from functools import cache
from pathlib import Path
from typing import Any, cast

from opsctl.constants import (
    DEFAULT_MAX_ATTEMPTS,
    HEARTBEAT_INDEX_KEY,
    HEARTBEAT_KEY,
    HEARTBEAT_LAST_KEY,
    IDEMPOTENCY_KEY,
    JOB_KEY,
    QUEUE_KEY,
)
from opsctl.errors import QueueError
from opsctl.queue.base import (
    Heartbeat,
    HeartbeatView,
    JobInfo,
    JobStatus,
    NewJob,
    QueueStats,
    new_job_id,
)

_LUA_DIR = Path(__file__).with_name("lua")
_STATUSES = frozenset({"ready", "delayed", "active", "done", "dead"})
# ASCII-only JSON: any Python string round-trips, and batches nest it safely in one argument.
JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)

WAKE_CAP = 100  # wake tokens kept; enough for every blocked worker, bounded when none waits

EncodedJob = tuple[str, str, str, float, str, int]
"""[id, kind, payload JSON, delay (s), idempotency key, max attempts]: one job of enqueue.lua."""


class QueueKeys:
    """The Redis keys of one queue under a prefix (the layout is in :mod:`opsctl.constants`)."""

    __slots__ = (
        "active",
        "dead",
        "delayed",
        "done_prefix",
        "hb_index",
        "hb_last",
        "hb_prefix",
        "idem_prefix",
        "job_prefix",
        "ready",
        "wake",
    )

    def __init__(self, prefix: str, queue: str):
        def part(name: str) -> str:
            return QUEUE_KEY.format(prefix=prefix, queue=queue, part=name)

        self.job_prefix = JOB_KEY.format(prefix=prefix, id="")
        self.idem_prefix = IDEMPOTENCY_KEY.format(prefix=prefix, key="")
        self.hb_prefix = HEARTBEAT_KEY.format(prefix=prefix, id="")
        self.hb_index = HEARTBEAT_INDEX_KEY.format(prefix=prefix)
        self.hb_last = HEARTBEAT_LAST_KEY.format(prefix=prefix)
        self.ready, self.active, self.delayed = part("ready"), part("active"), part("delayed")
        self.dead, self.wake, self.done_prefix = part("dead"), part("wake"), part("done:")


@cache
def lua(name: str) -> str:
    """The source of ``opsctl/queue/lua/<name>.lua``."""
    return (_LUA_DIR / f"{name}.lua").read_text("utf-8")


def text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def number(value: bytes | str | None) -> float | None:
    return None if value is None or value in (b"", "") else float(value)


def dump(value: Any, what: str) -> str:
    try:
        return JSON.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise QueueError(f"{what} is not JSON-serialisable: {exc}") from None


def check_text(value: str, what: str) -> None:
    """Key parts must be text Redis can hold: a lone surrogate has no UTF-8 form."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise QueueError(f"{what} is not valid Unicode text: {value!r}") from None


def printable(text: object) -> str:
    """Error text as valid UTF-8 whatever an exception put in it."""
    return str(text).encode("utf-8", "backslashreplace").decode()


def relative(at: float, what: str) -> float:
    """An absolute time on this machine's clock as seconds from now, which Redis adds to TIME."""
    if not (isinstance(at, int | float) and math.isfinite(at)):
        raise QueueError(f"{what} must be a finite time, got {at!r}")
    return at - time.time()


def encode_job(job: NewJob) -> EncodedJob:
    """One job as enqueue.lua takes it; raises :class:`QueueError` naming what is wrong."""
    if not isinstance(job.kind, str) or not job.kind:
        raise QueueError(f"a job needs a kind (a non-empty string), got {job.kind!r}")
    check_text(job.kind, "the kind of a job")
    payload = dump(job.payload, f"the payload of a {job.kind!r} job")
    if job.run_at is not None and job.delay_s is not None:
        raise QueueError(f"a {job.kind!r} job has both delay_s and run_at; give one")
    delay = 0.0
    if job.run_at is not None:
        delay = relative(job.run_at, f"run_at of a {job.kind!r} job")
    elif job.delay_s is not None:
        if not math.isfinite(job.delay_s):
            raise QueueError(f"delay_s of a {job.kind!r} job must be finite")
        delay = float(job.delay_s)
    max_attempts = DEFAULT_MAX_ATTEMPTS if job.max_attempts is None else job.max_attempts
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise QueueError(f"max_attempts of a {job.kind!r} job must be at least 1")
    if job.job_id is not None and not job.job_id:
        raise QueueError(f"a {job.kind!r} job has an empty job_id")
    idem = job.idempotency_key or ""
    check_text(job.job_id or "", f"the job_id of a {job.kind!r} job")
    check_text(idem, f"the idempotency key of a {job.kind!r} job")
    return (job.job_id or new_job_id(), job.kind, payload, delay, idem, max_attempts)


def parse_stats(reply: list[Any]) -> QueueStats:
    """stats.lua's reply: {waiting, delayed, active, dead, oldest waiting age, completed,
    delayed due, most overdue delayed job's lateness}."""
    waiting, delayed, active, dead, age, completed, due, overdue = reply
    return QueueStats(
        backend="redis",
        waiting=int(waiting),
        delayed=int(delayed),
        active=int(active),
        failed=int(dead),
        oldest_waiting_age_s=float(age),
        completed_last_minute=int(completed),
        delayed_due=int(due),
        oldest_due_age_s=float(overdue),
    )


def parse_heartbeats(reply: list[Any], *, ttl_s: float) -> list[HeartbeatView]:
    """heartbeats.lua's reply: {now, then id, last beat, 1 if its key is live, JSON} a process.
    A process is live while its own key is there and its last beat is younger than ``ttl_s``."""
    now = float(reply[0])
    views = []
    for i in range(1, len(reply), 4):
        process_id, last_seen = reply[i].decode(), float(reply[i + 1])
        age = max(0.0, now - last_seen)
        views.append(
            HeartbeatView(
                heartbeat=heartbeat(process_id, reply[i + 3]),
                last_seen=last_seen,
                age_s=age,
                live=reply[i + 2] == 1 and age < ttl_s,
            )
        )
    return views


def job_info(job_id: str, fields: dict[bytes, bytes], queue: str) -> JobInfo:
    """A job's hash as :class:`JobInfo`."""

    def field_text(name: str) -> str | None:
        return text(fields.get(name.encode()))

    def field_number(name: str) -> float | None:
        return number(fields.get(name.encode()))

    status = field_text("status") or "ready"
    result = fields.get(b"result")
    return JobInfo(
        id=job_id,
        kind=field_text("kind") or "",
        payload=json.loads(fields.get(b"payload", b"null")),
        queue=field_text("queue") or queue,
        status=cast(JobStatus, status if status in _STATUSES else "ready"),
        attempts=int(fields.get(b"attempts", b"0")),
        max_attempts=int(fields.get(b"max_attempts", str(DEFAULT_MAX_ATTEMPTS).encode())),
        created_at=field_number("created_at") or 0.0,
        run_at=field_number("run_at"),
        started_at=field_number("started_at"),
        finished_at=field_number("finished_at"),
        last_error=field_text("last_error"),
        result=json.loads(result) if result is not None else None,
        deferred_reason=field_text("deferred_reason"),
    )


def heartbeat(process_id: str, raw: bytes) -> Heartbeat:
    """A heartbeat's JSON; anything unreadable gives an empty one rather than an error."""
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    extra = data.get("extra")
    return Heartbeat(
        id=process_id,
        role=str(data.get("role", "")),
        started_at=float(data.get("started_at") or 0.0),
        in_flight=int(data.get("in_flight") or 0),
        processed=int(data.get("processed") or 0),
        version=str(data.get("version", "")),
        extra=extra if isinstance(extra, dict) else {},
    )
