"""The queue read from synchronous code that starts and exits: the deploy gate,
``opsctl check queue`` and ``opsctl status``.

On Redis it runs the daemons' own ``stats.lua`` and ``heartbeats.lua`` through redis-py's
synchronous client, in one round trip, and parses them as the asyncio backend does
(:mod:`opsctl.queue.redis_codec`); the canary is enqueued with ``enqueue.lua``. The embedded
SQLite queue is read through its asyncio backend on a private event loop. Both give the same
:class:`~opsctl.verdict.QueueSnapshot`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from opsctl.connections import create_sync_redis, describe_redis_error
from opsctl.constants import DEFAULT_QUEUE, HEARTBEAT_FORGET_S, HEARTBEAT_TTL_S, IDEMPOTENCY_TTL_S
from opsctl.errors import OpsctlError, QueueError, QueueUnavailable
from opsctl.health import snapshot_queue
from opsctl.queue import connect_queue
from opsctl.queue.base import JobInfo, NewJob, check_positive
from opsctl.queue.redis_codec import (
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
from opsctl.settings import Settings, redact_url
from opsctl.verdict import QueueSnapshot

_HINT = "check QUEUE_REDIS_URL and that Redis runs"


class QueueReader(Protocol):
    """What the deploy gate needs of the queue: one snapshot a round, and a canary."""

    def snapshot(self) -> QueueSnapshot: ...

    def enqueue(self, job: NewJob) -> str: ...

    def get(self, job_id: str) -> JobInfo | None: ...

    def close(self) -> None: ...


def open_reader(settings: Settings) -> QueueReader:
    """The reader for the settings' queue. Raises :class:`OpsctlError` when it cannot open."""
    if settings.queue_backend == "redis":
        return RedisReader.open(settings)
    return _AsyncReader(settings)


def read_queue_once(settings: Settings) -> QueueSnapshot:
    """One snapshot, as the gate takes it each round; a failure to connect is recorded in it,
    never raised."""
    try:
        reader = open_reader(settings)
    except OpsctlError as exc:
        return QueueSnapshot(settings.queue_backend, error=exc.message)
    try:
        return reader.snapshot()
    finally:
        reader.close()


class RedisReader:
    """The queue's Redis through one synchronous redis-py client; ``close`` it when done."""

    def __init__(self, client: redis.Redis, *, where: str, prefix: str, queue: str):
        self.queue = queue
        self.where = where
        self._client = client
        self._keys = QueueKeys(prefix, queue)
        self._stats = client.register_script(lua("stats"))
        self._heartbeats = client.register_script(lua("heartbeats"))
        self._enqueue = client.register_script(lua("enqueue"))

    @classmethod
    def open(cls, settings: Settings, *, queue: str = DEFAULT_QUEUE) -> RedisReader:
        """A reader on the settings' Redis. Connecting waits for the first command, whose
        failure a snapshot records and the canary raises as :class:`QueueUnavailable`."""
        client = create_sync_redis(settings)
        where = redact_url(settings.queue_redis_url)
        return cls(client, where=where, prefix=settings.redis_prefix, queue=queue)

    def snapshot(self, *, ttl_s: float = HEARTBEAT_TTL_S) -> QueueSnapshot:
        """Stats and heartbeats in one round trip; a failure is recorded, never raised."""
        check_positive("ttl_s", ttl_s)
        keys = self._keys
        started = time.perf_counter()
        try:
            with self._errors():
                pipe = self._client.pipeline(transaction=False)
                self._stats(
                    keys=(keys.ready, keys.delayed, keys.active, keys.dead),
                    args=(keys.job_prefix, keys.done_prefix),
                    client=pipe,
                )
                self._heartbeats(
                    keys=(keys.hb_index, keys.hb_last),
                    args=(keys.hb_prefix, HEARTBEAT_FORGET_S),
                    client=pipe,
                )
                stats_reply, beats_reply = pipe.execute()
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
        with self._errors():
            reply = self._enqueue(
                keys=(keys.ready, keys.delayed, keys.wake),
                args=(keys.job_prefix, keys.idem_prefix, self.queue, IDEMPOTENCY_TTL_S, WAKE_CAP,
                      batch),
            )  # fmt: skip
        return str(json.loads(reply)[0])

    def get(self, job_id: str) -> JobInfo | None:
        """The job, or ``None`` once it is gone."""
        check_text(job_id, "a job id")
        with self._errors():
            fields: dict[bytes, bytes] = self._client.hgetall(self._keys.job_prefix + job_id)  # type: ignore[assignment]
        return job_info(job_id, fields, self.queue) if fields else None

    def _errors(self) -> _Translate:
        return _Translate(self.where)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Translate:
    """redis-py's failures as :class:`QueueUnavailable` (not reached) or :class:`QueueError`."""

    def __init__(self, where: str):
        self._where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return
        message = describe_redis_error(self._where, exc)
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
            raise QueueUnavailable(message, hint=_HINT) from exc
        if isinstance(exc, RedisError):
            raise QueueError(message) from exc


class _AsyncReader:
    """A queue backend of :mod:`opsctl.queue` driven from synchronous code on its own loop."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._runner = asyncio.Runner()
        try:
            self._queue = self._runner.run(connect_queue(settings))
        except BaseException:
            self._runner.close()
            raise

    def snapshot(self) -> QueueSnapshot:
        return self._runner.run(snapshot_queue(self._queue, self._settings))

    def enqueue(self, job: NewJob) -> str:
        return self._runner.run(self._queue.enqueue(job))

    def get(self, job_id: str) -> JobInfo | None:
        return self._runner.run(self._queue.get(job_id))

    def close(self) -> None:
        try:
            self._runner.run(self._queue.close())
        finally:
            self._runner.close()
