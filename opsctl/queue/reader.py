"""The queue's state read from synchronous code that starts and exits: the deploy gate,
``opsctl check queue`` and ``opsctl status``.

Redis is read through :class:`~opsctl.queue.redis_probe.RedisProbe` (no redis-py, no
asyncio: the gate starts fast); the embedded SQLite queue through its asyncio backend on a
private event loop. Both give the same :class:`~opsctl.verdict.QueueSnapshot`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from opsctl.errors import OpsctlError
from opsctl.verdict import QueueSnapshot

if TYPE_CHECKING:
    from opsctl.queue.base import JobInfo, NewJob
    from opsctl.settings import Settings


class QueueReader(Protocol):
    """What the deploy gate needs of the queue: one snapshot a round, and a canary."""

    def snapshot(self) -> QueueSnapshot: ...

    def enqueue(self, job: NewJob) -> str: ...

    def get(self, job_id: str) -> JobInfo | None: ...

    def close(self) -> None: ...


def open_reader(settings: Settings) -> QueueReader:
    """Redis through the small synchronous client (no redis-py, no asyncio: the gate starts
    fast); the embedded SQLite queue through its asyncio backend. Raises OpsctlError."""
    if settings.queue_backend == "redis":
        from opsctl.queue.redis_probe import RedisProbe

        return RedisProbe.open(settings)
    return _AsyncReader(settings)


def read_queue_once(settings: Settings) -> QueueSnapshot:
    """One snapshot, as the gate takes it each round (``opsctl check queue``, ``opsctl
    status``); a failure to connect is recorded in it, never raised."""
    try:
        reader = open_reader(settings)
    except OpsctlError as exc:
        return QueueSnapshot(settings.queue_backend, error=exc.message)
    try:
        return reader.snapshot()
    finally:
        reader.close()


class _AsyncReader:
    """A queue backend of :mod:`opsctl.queue` driven from synchronous code on its own loop."""

    def __init__(self, settings: Settings):
        import asyncio

        from opsctl.queue import connect_queue

        self._settings = settings
        self._runner = asyncio.Runner()
        try:
            self._queue = self._runner.run(connect_queue(settings))
        except BaseException:
            self._runner.close()
            raise

    def snapshot(self) -> QueueSnapshot:
        from opsctl.health import snapshot_queue

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
