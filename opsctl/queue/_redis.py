"""The Redis queue backend: a ready list, lease, delay and dead sets, and one Lua script a move.

Every state change that takes several steps is one Lua script, so it is atomic however many
workers, timers and schedulers share the Redis. Every timestamp and lease deadline is the Redis
server's ``TIME``, so machines whose clocks disagree still agree on leases; absolute times a
caller passes in (``run_at``, ``retry_at``) travel as "seconds from now". Work is batched: one
round trip reserves many jobs, acknowledges many, or renews every lease a worker holds.

The key layout is documented in :mod:`opsctl.constants`. Scripts compute job keys from a prefix
passed in, which suits a single Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from opsctl.connections import create_redis, describe_redis_error, ping_redis, verify_redis
from opsctl.constants import (
    DEFAULT_QUEUE,
    HEARTBEAT_FORGET_S,
    HEARTBEAT_RESERVED_IDS,
    IDEMPOTENCY_TTL_S,
    RESULT_TTL_S,
)
from opsctl.errors import QueueError, QueueUnavailable
from opsctl.queue.base import (
    DeferOutcome,
    FailOutcome,
    Heartbeat,
    HeartbeatView,
    Job,
    JobInfo,
    NewJob,
    QueueStats,
    check_positive,
    check_process_ids,
)
from opsctl.queue.redis_codec import (
    JSON,
    WAKE_CAP,
    QueueKeys,
    dump,
    encode_job,
    job_info,
    lua,
    parse_heartbeats,
    parse_stats,
    printable,
    relative,
)
from opsctl.settings import Settings, redact_url

_SCRIPTS = (
    "enqueue",
    "reserve",
    "complete",
    "renew",
    "fail",
    "defer",
    "release",
    "promote",
    "requeue",
    "dead_move",
    "stats",
    "beat",
    "heartbeats",
    "forget",
)
_CHUNK = 1000  # jobs a script call; keeps any one call to a few milliseconds of Redis time
_BLOCK_S = 2.0  # longest single BLPOP; a lost wake-up costs at most this long


class _Translate:
    """Turns redis-py failures into :class:`QueueUnavailable` or :class:`QueueError`."""

    __slots__ = ("_where",)

    def __init__(self, where: str):
        self._where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
            raise QueueUnavailable(
                describe_redis_error(self._where, exc),
                hint="check QUEUE_REDIS_URL and that Redis runs",
            ) from exc
        if isinstance(exc, RedisError):
            raise QueueError(describe_redis_error(self._where, exc)) from exc
        if isinstance(exc, UnicodeEncodeError):  # a lone surrogate in an id, owner or key
            raise QueueError(
                f"text for Redis at {self._where} is not valid Unicode: {exc}"
            ) from exc


def _address(client: aioredis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"


class RedisQueue:
    """One queue on Redis. Safe to share between tasks; every process opens its own."""

    backend: Literal["redis", "sqlite"] = "redis"

    def __init__(
        self, client: aioredis.Redis, *, prefix: str, queue: str, where: str, owns_client: bool
    ):
        if not queue:
            raise QueueError("a queue needs a name")
        self.queue = queue
        self._client = client
        self._where = where
        self._owns_client = owns_client
        self._closed = False
        self._errors = _Translate(where)
        # A BLPOP must return before the client's socket timeout would call it a dead connection.
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._block_s = min(_BLOCK_S, socket_timeout / 2) if socket_timeout else _BLOCK_S
        keys = QueueKeys(prefix, queue)
        self._job_prefix, self._idem_prefix = keys.job_prefix, keys.idem_prefix
        self._hb_prefix, self._hb_index, self._hb_last = keys.hb_prefix, keys.hb_index, keys.hb_last
        self._ready, self._active, self._delayed = keys.ready, keys.active, keys.delayed
        self._dead, self._wake, self._done_prefix = keys.dead, keys.wake, keys.done_prefix
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(lua(name)) for name in _SCRIPTS
        }

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        queue: str = DEFAULT_QUEUE,
        client: aioredis.Redis | None = None,
    ) -> RedisQueue:
        """Connect, check that Redis answers and load the scripts.

        Raises :class:`QueueUnavailable` naming the address when Redis cannot be reached within
        a few seconds. A ``client`` passed in stays the caller's to close.
        """
        owns = client is None
        if client is None:
            client = create_redis(settings)
        where = redact_url(settings.queue_redis_url) or _address(client)
        try:
            await verify_redis(client, where)
            self = cls(
                client, prefix=settings.redis_prefix, queue=queue, where=where, owns_client=owns
            )
            with self._errors:
                # Loaded up front so the first reserve is one round trip; a restarted Redis
                # that forgot them gets them again from redis-py on NOSCRIPT.
                async with client.pipeline(transaction=False) as pipe:
                    for name in _SCRIPTS:
                        pipe.script_load(lua(name))
                    await pipe.execute()
        except BaseException:
            if owns:
                await client.aclose()
            raise
        return self

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._errors:
            return await self._scripts[name](keys=keys, args=args)

    # -- producing ---------------------------------------------------------------------------

    async def enqueue(self, job: NewJob) -> str:
        """Add one job; return its id (the existing id for a repeated idempotency key/id)."""
        return (await self.enqueue_many([job]))[0]

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[str]:
        """Add many jobs, a thousand a round trip. Every job is checked before any is sent, so
        a payload that is not JSON-serialisable raises :class:`QueueError` and adds nothing."""
        encoded = [encode_job(job) for job in jobs]
        ids: list[str] = []
        keys = (self._ready, self._delayed, self._wake)
        head = (self._job_prefix, self._idem_prefix, self.queue, IDEMPOTENCY_TTL_S, WAKE_CAP)
        for start in range(0, len(encoded), _CHUNK):
            # One JSON argument and one JSON reply a chunk: packing and parsing thousands of
            # separate values costs far more in redis-py than Redis spends adding the jobs.
            batch = JSON.encode(encoded[start : start + _CHUNK])
            ids.extend(json.loads(await self._run("enqueue", keys, (*head, batch))))
        return ids

    # -- consuming ---------------------------------------------------------------------------

    async def reserve(
        self, count: int, *, owner: str, lease_s: float, wait_s: float = 0.0
    ) -> list[Job]:
        """Take up to ``count`` ready jobs under a lease in one round trip; when none is ready,
        block on the wake list up to ``wait_s`` for the first. Bad arguments raise QueueError."""
        if not isinstance(count, int) or count <= 0:
            raise QueueError(f"reserve needs a count of at least 1, got {count!r}")
        check_positive("lease_s", lease_s)
        if not (math.isfinite(wait_s) and wait_s >= 0):
            raise QueueError(f"wait_s must be zero or more seconds, got {wait_s!r}")
        keys = (self._ready, self._active, self._wake)
        args = (self._job_prefix, count, lease_s, owner, WAKE_CAP)
        give_up = time.monotonic() + wait_s
        while True:
            jobs = await self._reserve_once(keys, args)
            remaining = give_up - time.monotonic()
            if jobs or remaining < 0.001:
                return jobs
            with self._errors:
                await self._client.blpop([self._wake], timeout=min(remaining, self._block_s))

    async def _reserve_once(self, keys: Sequence[str], args: Sequence[Any]) -> list[Job]:
        call = asyncio.ensure_future(self._run("reserve", keys, args))
        try:
            return self._jobs(await asyncio.shield(call))
        except asyncio.CancelledError:
            # The script may have leased jobs to us already: hand them back before stopping, so
            # a cancelled reserve (a worker draining) strands nothing until its lease lapses.
            with contextlib.suppress(Exception):
                jobs = self._jobs(await call)
                if jobs:
                    await self.release(jobs)
            raise

    def _jobs(self, reply: bytes) -> list[Job]:
        # One JSON document for the whole batch: parsing it is one C call, where a Redis array
        # would cost a Python parser step for every field of every job.
        values = json.loads(reply)
        lease_until, queue = float(values[1]), self.queue
        return [
            Job(
                id=values[i],
                kind=values[i + 1],
                payload=values[i + 2],
                queue=queue,
                attempt=values[i + 3],
                max_attempts=values[i + 4],
                token=values[i + 5],
                enqueued_at=float(values[i + 6]),
                lease_until=lease_until,
            )
            for i in range(2, len(values), 7)
        ]

    async def renew(self, jobs: Sequence[Job], *, lease_s: float) -> list[str]:
        """Extend every lease in one round trip; return the ids whose lease was lost."""
        check_positive("lease_s", lease_s)
        lost: list[str] = []
        for start in range(0, len(jobs), _CHUNK):
            batch = JSON.encode([(job.id, job.token) for job in jobs[start : start + _CHUNK]])
            reply = await self._run("renew", (self._active,), (self._job_prefix, lease_s, batch))
            lost.extend(json.loads(reply))
        return lost

    async def complete(self, outcomes: Sequence[tuple[Job, Any]]) -> list[bool]:
        """Acknowledge jobs with their results; False for each stale token (nothing written).
        A result that is not JSON-serialisable raises QueueError before anything is written."""
        encoded = [
            (job.id, job.token, dump(result, f"the result of {job.kind!r} job {job.id}"))
            for job, result in outcomes
        ]
        done: list[bool] = []
        head = (self._job_prefix, self._done_prefix, RESULT_TTL_S)
        for start in range(0, len(encoded), _CHUNK):
            batch = JSON.encode(encoded[start : start + _CHUNK])
            flags: bytes = await self._run("complete", (self._active,), (*head, batch))
            done.extend(flag == 0x31 for flag in flags)  # b"1"
        return done

    async def fail(self, job: Job, error: str, *, retry_at: float | None) -> FailOutcome:
        """Record a failed run: retry at ``retry_at`` through the delayed set, or dead-letter
        it past the attempt limit or when ``retry_at`` is None; ``stale`` for an old token."""
        delay: float | str = "" if retry_at is None else relative(retry_at, "retry_at")
        outcome = await self._run(
            "fail",
            (self._active, self._delayed, self._dead),
            (self._job_prefix, job.id, job.token, printable(error), delay),
        )
        return cast(FailOutcome, outcome.decode())

    async def defer(self, job: Job, *, run_at: float, reason: str | None = None) -> DeferOutcome:
        """Put the job in the delayed set until ``run_at`` with its run given back, in one
        script; ``stale`` for an old token (nothing changed)."""
        delay = relative(run_at, "run_at")
        outcome = await self._run(
            "defer",
            (self._active, self._delayed),
            (self._job_prefix, job.id, job.token, printable(reason) if reason else "", delay),
        )
        return cast(DeferOutcome, outcome.decode())

    async def release(self, jobs: Sequence[Job]) -> None:
        """Put unfinished jobs back at the front, in their order; the run does not count."""
        for start in range(0, len(jobs), _CHUNK):
            args: list[Any] = [self._job_prefix, WAKE_CAP]
            # Each goes to the front in turn, so the job to run first is pushed last.
            for job in reversed(jobs[start : start + _CHUNK]):
                args += (job.id, job.token)
            await self._run("release", (self._ready, self._active, self._wake), args)

    # -- timers ------------------------------------------------------------------------------

    async def promote_due(self, limit: int = 1000) -> int:
        """Move delayed jobs whose time has come to ready; return how many moved."""
        check_positive("limit", limit)
        keys = (self._delayed, self._ready, self._wake)
        return int(await self._run("promote", keys, (self._job_prefix, limit, WAKE_CAP)))

    async def requeue_expired(self, limit: int = 1000) -> int:
        """Put jobs whose lease lapsed back at the front of ready (or dead past the limit)."""
        check_positive("limit", limit)
        keys = (self._active, self._ready, self._dead, self._wake)
        return int(await self._run("requeue", keys, (self._job_prefix, limit, WAKE_CAP)))

    # -- inspection --------------------------------------------------------------------------

    async def stats(self) -> QueueStats:
        """Counts of every state; the waiting age is that of the next job to run, counted from
        when it became ready (so a job delayed an hour does not look an hour late)."""
        reply = await self._run(
            "stats",
            (self._ready, self._delayed, self._active, self._dead),
            (self._job_prefix, self._done_prefix),
        )
        return parse_stats(reply)

    async def get(self, job_id: str) -> JobInfo | None:
        with self._errors:
            fields = cast(
                "dict[bytes, bytes]", await self._client.hgetall(self._job_prefix + job_id)
            )
        return job_info(job_id, fields, self.queue) if fields else None

    async def dead(self, limit: int = 100) -> list[JobInfo]:
        """Dead-lettered jobs, newest first."""
        check_positive("limit", limit)
        with self._errors:
            raw_ids = cast("list[bytes]", await self._client.zrevrange(self._dead, 0, limit - 1))
            ids = [raw.decode() for raw in raw_ids]
            async with self._client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(self._job_prefix + job_id)
                hashes = await pipe.execute() if ids else []
        # Read in two steps: a job retried or purged in between is left out.
        return [
            job_info(i, h, self.queue)
            for i, h in zip(ids, hashes, strict=True)
            if h.get(b"status") == b"dead"
        ]

    async def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        """Move dead jobs (all, or these) to the back of ready with a fresh attempt count."""
        return await self._dead_move("retry", ids)

    async def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead jobs (all, or these) for good."""
        return await self._dead_move("purge", ids)

    async def _dead_move(self, action: str, ids: Sequence[str] | None) -> int:
        keys = (self._dead, self._ready, self._wake)
        head = [self._job_prefix, self._idem_prefix, WAKE_CAP, action]
        total = 0
        if ids is None:
            # A batch at a time, so a huge dead set never holds Redis for long.
            while True:
                moved, examined = await self._run("dead_move", keys, [*head, _CHUNK])
                total += int(moved)
                if int(examined) < _CHUNK:
                    return total
        for start in range(0, len(ids), _CHUNK):
            moved, _ = await self._run("dead_move", keys, [*head, "", *ids[start : start + _CHUNK]])
            total += int(moved)
        return total

    # -- heartbeats --------------------------------------------------------------------------

    async def beat(self, heartbeat: Heartbeat, *, ttl_s: float) -> None:
        """Write this process's heartbeat under its own key, expiring after ``ttl_s``."""
        check_positive("ttl_s", ttl_s)
        if not heartbeat.id or heartbeat.id in HEARTBEAT_RESERVED_IDS:
            raise QueueError(f"a heartbeat needs a process id like host:pid, got {heartbeat.id!r}")
        data = dump(
            {
                "id": heartbeat.id,
                "role": heartbeat.role,
                "started_at": heartbeat.started_at,
                "in_flight": heartbeat.in_flight,
                "processed": heartbeat.processed,
                "version": heartbeat.version,
                "extra": heartbeat.extra,
            },
            f"the heartbeat of {heartbeat.id}",
        )
        await self._run(
            "beat",
            (self._hb_prefix + heartbeat.id, self._hb_index, self._hb_last),
            (heartbeat.id, data, max(1, round(ttl_s * 1000)), HEARTBEAT_FORGET_S),
        )

    async def remove_heartbeat(self, process_id: str) -> None:
        """Delete a heartbeat (on clean exit)."""
        with self._errors:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._hb_prefix + process_id)
                pipe.zrem(self._hb_index, process_id)
                pipe.hdel(self._hb_last, process_id)
                await pipe.execute()

    async def forget_heartbeats(
        self, process_ids: Sequence[str], *, only_stale: bool = False
    ) -> list[str]:
        """Forget processes (key, index entry, last record), a thousand a script call; returns
        the ids that were known. With ``only_stale``, one whose own key is there is kept."""
        ids = check_process_ids(process_ids)
        forgotten: list[str] = []
        head = (self._hb_prefix, "1" if only_stale else "0")
        for start in range(0, len(ids), _CHUNK):
            reply = await self._run(
                "forget", (self._hb_index, self._hb_last), (*head, *ids[start : start + _CHUNK])
            )
            forgotten.extend(raw.decode() for raw in reply)
        return forgotten

    async def heartbeats(self, *, ttl_s: float) -> list[HeartbeatView]:
        """Every process seen in the last hour: live while its own key is there and its last
        beat is younger than ``ttl_s``, stale after."""
        check_positive("ttl_s", ttl_s)
        reply = await self._run(
            "heartbeats", (self._hb_index, self._hb_last), (self._hb_prefix, HEARTBEAT_FORGET_S)
        )
        return parse_heartbeats(reply, ttl_s=ttl_s)

    # -- connection --------------------------------------------------------------------------

    async def ping(self) -> float:
        """Seconds for one round trip to Redis."""
        with self._errors:
            return await ping_redis(self._client)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> RedisQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
