"""A process's own heartbeat: written on start and every interval, deleted on clean exit.

A process that dies without a clean exit (SIGKILL, a lost machine) leaves its heartbeat to
lapse: it is listed as stale for an hour, or until an operator forgets it
(:func:`forget_processes`, :func:`forget_stale`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import opsctl
from opsctl.constants import HEARTBEAT_INTERVAL_S, HEARTBEAT_TTL_S
from opsctl.errors import NotFound, OpsctlError
from opsctl.queue.base import Heartbeat, QueueBackend, check_process_ids

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


_SHOWN_ID = 80  # characters of an id an error sentence shows


def _shown(process_ids: Sequence[str]) -> str:
    return ", ".join(
        repr(i if len(i) <= _SHOWN_ID else i[: _SHOWN_ID - 1] + "…") for i in process_ids
    )


async def forget_processes(
    queue: QueueBackend,
    process_ids: Sequence[str],
    *,
    force: bool = False,
    ttl_s: float = HEARTBEAT_TTL_S,
) -> list[str]:
    """Forget these processes' heartbeats; returns the ids forgotten.

    All or nothing: an id no heartbeat carries raises :class:`NotFound`, and a process still
    beating raises :class:`OpsctlError` unless ``force`` (it would beat again within seconds),
    both naming every such id, before anything is forgotten. A process that beats again in the
    moment between the check and the forgetting is kept and named the same way.
    """
    ids = check_process_ids(process_ids)
    views = {v.heartbeat.id: v for v in await queue.heartbeats(ttl_s=ttl_s)}
    unknown = [i for i in ids if i not in views]
    live = [i for i in ids if i in views and views[i].live]
    refused = [] if force else live
    problems = []
    if unknown:
        problems.append(f"no process heartbeat {_shown(unknown)}")
    if refused:
        problems.append(
            f"{_shown(refused)} still beating: stop the process first, or add --force"
            " (it writes its heartbeat again at its next beat)"
        )
    if problems:
        error = OpsctlError if refused else NotFound
        raise error("; ".join(problems), hint="see: opsctl workers list --all")
    forgotten = await queue.forget_heartbeats(ids, only_stale=not force)
    if len(forgotten) < len(ids):
        # Left out: gone meanwhile (a clean exit: nothing to forget), or beating again.
        now_known = {v.heartbeat.id for v in await queue.heartbeats(ttl_s=ttl_s)}
        kept = [i for i in ids if i not in forgotten and i in now_known]
        if kept:
            done = f"; forgot {_shown(forgotten)}" if forgotten else ""
            raise OpsctlError(f"{_shown(kept)} beat again while being forgotten, so kept{done}")
    return forgotten


async def forget_stale(queue: QueueBackend, *, ttl_s: float = HEARTBEAT_TTL_S) -> list[str]:
    """Forget every process whose heartbeat lapsed; one that beats again meanwhile is kept."""
    stale = [v.heartbeat.id for v in await queue.heartbeats(ttl_s=ttl_s) if not v.live]
    if not stale:
        return []
    return await queue.forget_heartbeats(stale, only_stale=True)
