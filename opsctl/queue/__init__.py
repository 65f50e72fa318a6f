"""The job queue: one interface, a Redis backend (scale-out) and a SQLite one (embedded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opsctl.constants import DEFAULT_QUEUE
from opsctl.queue.base import (
    DeferOutcome,
    FailOutcome,
    Heartbeat,
    HeartbeatView,
    Job,
    JobInfo,
    JobStatus,
    NewJob,
    QueueBackend,
    QueueStats,
    new_job_id,
)
from opsctl.settings import Settings

__all__ = [
    "DeferOutcome",
    "FailOutcome",
    "Heartbeat",
    "HeartbeatView",
    "Job",
    "JobInfo",
    "JobStatus",
    "NewJob",
    "QueueBackend",
    "QueueStats",
    "connect_queue",
    "new_job_id",
    "open_queue",
]


async def connect_queue(settings: Settings, *, queue: str = DEFAULT_QUEUE) -> QueueBackend:
    """The queue the settings name: Redis when ``QUEUE_REDIS_URL`` is set, else embedded SQLite.

    Raises :class:`~opsctl.errors.QueueUnavailable` with the address when it cannot be reached.
    The caller closes it.
    """
    if settings.queue_backend == "redis":
        from opsctl.queue._redis import RedisQueue

        return await RedisQueue.open(settings, queue=queue)
    from opsctl.queue._sqlite import SQLiteQueue

    return await SQLiteQueue.open(settings.queue_sqlite_path, queue=queue)


@asynccontextmanager
async def open_queue(
    settings: Settings, *, queue: str = DEFAULT_QUEUE
) -> AsyncIterator[QueueBackend]:
    """The queue for the block's duration, closed after it."""
    backend = await connect_queue(settings, queue=queue)
    try:
        yield backend
    finally:
        await backend.close()
