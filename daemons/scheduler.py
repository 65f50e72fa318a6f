"""The scheduler daemon: every second, turns due cron occurrences into jobs.

Several replicas may run at once: occurrences have deterministic job ids (see
:mod:`opsctl.schedules`), so each is enqueued once whichever replica gets there first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import NoReturn

from daemons._queue import Outage, queue_address
from daemons._signals import ShutdownSignal
from opsctl.constants import DEFAULT_QUEUE, SCHEDULER_INTERVAL_S
from opsctl.entry import run_entry
from opsctl.errors import QueueError
from opsctl.logs import configure_logging
from opsctl.preflight import run_preflight
from opsctl.queue import QueueBackend, connect_queue
from opsctl.queue.heartbeat import Activity, HeartbeatWriter
from opsctl.schedules import enqueue_due
from opsctl.settings import Settings, load_settings
from opsctl.store import Store, connect, migrate

log = logging.getLogger("opsctl.scheduler")


class Scheduler:
    """Enqueues due occurrences every interval until stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        interval_s: float = SCHEDULER_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self._clock = clock
        self.outage = Outage(log, queue_address(settings))
        self._queues: dict[str, QueueBackend] = {}
        self.enqueued = 0
        self._store_down = False

    def activity(self) -> Activity:
        return Activity(processed=self.enqueued, extra={"queues": sorted(self._queues)})

    async def _queue_for(self, name: str) -> QueueBackend:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = await connect_queue(self.settings, queue=name)
        return queue

    async def tick(self, store: Store) -> int:
        occurrences = await enqueue_due(store, self._queue_for, now=self._clock())
        for occurrence in occurrences:
            log.info(
                "enqueued %s for schedule %r",
                occurrence.job_id,
                occurrence.schedule,
                extra={"schedule": occurrence.schedule, "job_id": occurrence.job_id},
            )
        self.enqueued += len(occurrences)
        return len(occurrences)

    async def run(self, stop: asyncio.Event) -> None:
        """Open the store (migrating it) and the default queue, tick until ``stop`` is set."""
        store = await connect(self.settings)
        try:
            applied = await migrate(store)
            if applied:
                log.info("applied %d migration(s)", len(applied))
            default = await self._queue_for(DEFAULT_QUEUE)
            async with HeartbeatWriter(default, role="scheduler", activity=self.activity):
                log.info("scheduler started (%s, database %s)", self.outage.where, store.location)
                while not stop.is_set():
                    wait = self.interval_s - (self._clock() % self.interval_s)
                    try:
                        await self.tick(store)
                    except QueueError as exc:
                        wait = self.outage.lost(exc)
                    except Exception as exc:  # the database, or a bug: log it, keep going
                        if not self._store_down:
                            log.error("scheduler pass failed: %s", exc, exc_info=exc)
                        self._store_down = True
                    else:
                        self.outage.ok()
                        if self._store_down:
                            log.warning("scheduler passes work again")
                        self._store_down = False
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        finally:
            for queue in self._queues.values():
                await queue.close()
            self._queues.clear()
            await store.close()
        log.info("scheduler stopped: %d occurrence(s) enqueued", self.enqueued)


def create_scheduler(settings: Settings, *, interval_s: float = SCHEDULER_INTERVAL_S) -> Scheduler:
    return Scheduler(settings, interval_s=interval_s)


async def serve(scheduler: Scheduler) -> None:
    shutdown = ShutdownSignal()
    shutdown.install()
    await scheduler.run(shutdown.event)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.05 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be from 0.05 to 60 seconds, got {text}")
    return value


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="opsctl daemon scheduler", description="Turn cron schedules into jobs."
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=SCHEDULER_INTERVAL_S,
        help="seconds between passes (default %(default)s)",
    )
    args = parser.parse_args(argv)

    def body() -> int:
        settings = load_settings()
        run_preflight(settings)
        configure_logging(settings)
        asyncio.run(serve(create_scheduler(settings, interval_s=args.interval)))
        return 0

    run_entry(body, program="opsctl daemon scheduler")


if __name__ == "__main__":
    main()
