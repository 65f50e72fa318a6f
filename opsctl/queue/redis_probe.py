"""The Redis queue read (and a canary enqueued) synchronously, for the deploy gate.

The gate starts on every deploy, so it reads the queue with :mod:`opsctl.queue.resp` instead
of redis-py: the same Lua scripts as :class:`~opsctl.queue._redis.RedisQueue`, the same keys and
reply parsing (:mod:`opsctl.queue._redis_codec`), one round trip for a whole snapshot.
"""

from __future__ import annotations

import json
import time
from typing import Any

from opsctl.constants import DEFAULT_QUEUE, HEARTBEAT_FORGET_S, HEARTBEAT_TTL_S, IDEMPOTENCY_TTL_S
from opsctl.errors import QueueError, QueueUnavailable
from opsctl.queue._redis_codec import (
    JSON,
    WAKE_CAP,
    QueueKeys,
    check_text,
    encode_job,
    job_info,
    lua,
    parse_heartbeats,
    parse_stats,
)
from opsctl.queue.base import JobInfo, NewJob, check_positive
from opsctl.queue.resp import RespConnection, RespError, describe_failure
from opsctl.settings import Settings, redact_url
from opsctl.verdict import QueueSnapshot

_HINT = "check QUEUE_REDIS_URL and that Redis runs"


class RedisProbe:
    """One connection to the queue's Redis. Not thread-safe; ``close`` it when done."""

    def __init__(self, conn: RespConnection, *, prefix: str, queue: str = DEFAULT_QUEUE):
        self.queue = queue
        self.where = conn.address.where
        self._conn = conn
        self._keys = QueueKeys(prefix, queue)

    @classmethod
    def open(cls, settings: Settings, *, queue: str = DEFAULT_QUEUE) -> RedisProbe:
        """Connect; raises :class:`QueueUnavailable` naming the address and why."""
        url = settings.queue_redis_url
        if not url:
            raise QueueUnavailable("QUEUE_REDIS_URL is not set, so there is no Redis to connect to")
        try:
            conn = RespConnection.open(url)
        except (OSError, RespError, ValueError) as exc:
            raise QueueUnavailable(describe_failure(redact_url(url), exc), hint=_HINT) from None
        return cls(conn, prefix=settings.redis_prefix, queue=queue)

    def snapshot(self, *, ttl_s: float = HEARTBEAT_TTL_S) -> QueueSnapshot:
        """Stats and heartbeats in one round trip; a failure is recorded, never raised."""
        check_positive("ttl_s", ttl_s)
        keys = self._keys
        started = time.perf_counter()
        try:
            stats_reply, beats_reply = self._scripts(
                (
                    "stats",
                    (keys.ready, keys.delayed, keys.active, keys.dead),
                    (keys.job_prefix, keys.done_prefix),
                ),
                (
                    "heartbeats",
                    (keys.hb_index, keys.hb_last),
                    (keys.hb_prefix, HEARTBEAT_FORGET_S),
                ),
            )
            rtt = time.perf_counter() - started
            stats = parse_stats(stats_reply)
            processes = parse_heartbeats(beats_reply, ttl_s=ttl_s)
        except QueueError as exc:
            return QueueSnapshot("redis", error=exc.message)
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            reason = f"Redis at {self.where} sent an unexpected reply: {exc}"
            return QueueSnapshot("redis", error=reason)
        return QueueSnapshot("redis", stats, tuple(processes), rtt)

    def enqueue(self, job: NewJob) -> str:
        """Add one job the way ``RedisQueue.enqueue`` does; returns its id."""
        keys = self._keys
        batch = JSON.encode([encode_job(job)])
        (reply,) = self._scripts(
            (
                "enqueue",
                (keys.ready, keys.delayed, keys.wake),
                (keys.job_prefix, keys.idem_prefix, self.queue, IDEMPOTENCY_TTL_S, WAKE_CAP, batch),
            )
        )
        ids = json.loads(reply)
        return str(ids[0])

    def get(self, job_id: str) -> JobInfo | None:
        """The job, or ``None`` once it is gone."""
        check_text(job_id, "a job id")
        try:
            flat = self._conn.call("HGETALL", self._keys.job_prefix + job_id)
        except (OSError, RespError) as exc:
            raise self._failure(exc) from None
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return job_info(job_id, fields, self.queue) if fields else None

    def _scripts(self, *calls: tuple[str, tuple[str, ...], tuple[Any, ...]]) -> list[Any]:
        """Run Lua scripts in one round trip (``EVAL``: Redis caches them by their digest)."""
        commands = [("EVAL", lua(name), len(keys), *keys, *args) for name, keys, args in calls]
        try:
            replies = self._conn.pipeline(commands)
        except OSError as exc:
            raise self._failure(exc) from None
        for reply in replies:
            if isinstance(reply, RespError):
                raise self._failure(reply)
        return replies

    def _failure(self, exc: BaseException) -> QueueError:
        message = describe_failure(self.where, exc)
        if isinstance(exc, RespError):
            return QueueError(message)
        return QueueUnavailable(message, hint=_HINT)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RedisProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
