"""A process's own heartbeat: written on start and every interval, deleted on clean exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import opsctl
from opsctl.constants import HEARTBEAT_INTERVAL_S, HEARTBEAT_TTL_S
from opsctl.queue.base import Heartbeat, QueueBackend

log = logging.getLogger("opsctl.heartbeat")

REMOVE_TIMEOUT_S = 2.0


def process_id() -> str:
    """This process's heartbeat id, ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Activity:
    """What the owner reports in each beat."""

    in_flight: int = 0
    processed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class HeartbeatWriter:
    """``async with HeartbeatWriter(queue, role="worker", activity=…):`` keeps the beat alive.

    A failed write is logged at debug level and retried at the next interval: the owner
    reports the backend's outage itself, once, rather than every few seconds here.
    """

    def __init__(
        self,
        queue: QueueBackend,
        *,
        role: str,
        activity: Callable[[], Activity] | None = None,
        process: str | None = None,
        version: str = opsctl.__version__,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        ttl_s: float = HEARTBEAT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self.role = role
        self.id = process or process_id()
        self._activity = activity or Activity
        self._version = version
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        self._clock = clock
        self.started_at = clock()
        self._task: asyncio.Task[None] | None = None
        self.beats = 0

    def _heartbeat(self) -> Heartbeat:
        now = self._activity()
        return Heartbeat(
            id=self.id,
            role=self.role,
            started_at=self.started_at,
            in_flight=now.in_flight,
            processed=now.processed,
            version=self._version,
            extra=dict(now.extra),
        )

    async def beat(self) -> bool:
        """Write one beat now; False when the backend did not take it."""
        try:
            await self._queue.beat(self._heartbeat(), ttl_s=self._ttl_s)
        except Exception as exc:
            log.debug("heartbeat not written: %s", exc)
            return False
        self.beats += 1
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.beat()

    async def __aenter__(self) -> HeartbeatWriter:
        await self.beat()
        self._task = asyncio.create_task(self._run(), name=f"heartbeat:{self.role}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await asyncio.wait_for(self._queue.remove_heartbeat(self.id), REMOVE_TIMEOUT_S)
        except Exception as exc:  # the key expires by itself after its TTL
            log.debug("heartbeat not removed: %s", exc)
