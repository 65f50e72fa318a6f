"""The timers daemon: moves due delayed jobs and retries to ready, puts lapsed leases back.

Each call to the backend is atomic, so several replicas may run at once: a job moves once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import NoReturn

from daemons._queue import Outage, queue_address
from daemons._signals import ShutdownSignal
from opsctl.constants import DEFAULT_QUEUE, TIMERS_BATCH, TIMERS_INTERVAL_S
from opsctl.entry import run_entry
from opsctl.logs import configure_logging
from opsctl.preflight import run_preflight
from opsctl.queue import QueueBackend, connect_queue
from opsctl.queue.heartbeat import Activity, HeartbeatWriter
from opsctl.settings import Settings, load_settings

log = logging.getLogger("opsctl.timers")

MAX_BATCHES_PER_TICK = 100  # then yield a tick, so a huge backlog cannot starve the heartbeat


class Timers:
    """Every interval: ``promote_due`` and ``requeue_expired`` in batches until caught up."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue: str = DEFAULT_QUEUE,
        interval_s: float = TIMERS_INTERVAL_S,
        batch: int = TIMERS_BATCH,
        backend: QueueBackend | None = None,
    ) -> None:
        self.settings = settings
        self.queue_name = queue
        self.interval_s = interval_s
        self.batch = batch
        self._backend = backend
        self.outage = Outage(log, queue_address(settings))
        self.promoted = 0
        self.requeued = 0

    def activity(self) -> Activity:
        return Activity(
            processed=self.promoted + self.requeued,
            extra={"queue": self.queue_name, "promoted": self.promoted, "requeued": self.requeued},
        )

    async def tick(self, queue: QueueBackend) -> tuple[int, int]:
        """One pass: return (promoted, requeued)."""
        promoted = requeued = 0
        for _ in range(MAX_BATCHES_PER_TICK):
            moved = await queue.promote_due(self.batch)
            promoted += moved
            if moved < self.batch:
                break
        for _ in range(MAX_BATCHES_PER_TICK):
            moved = await queue.requeue_expired(self.batch)
            requeued += moved
            if moved < self.batch:
                break
        self.promoted += promoted
        self.requeued += requeued
        return promoted, requeued

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; the pass under way finishes first."""
        queue = self._backend or await connect_queue(self.settings, queue=self.queue_name)
        try:
            async with HeartbeatWriter(queue, role="timers", activity=self.activity):
                log.info(
                    "timers started on queue %r (%s), every %g s",
                    self.queue_name,
                    self.outage.where,
                    self.interval_s,
                )
                while not stop.is_set():
                    wait = self.interval_s
                    try:
                        promoted, requeued = await self.tick(queue)
                    except Exception as exc:
                        wait = self.outage.lost(exc)
                    else:
                        self.outage.ok()
                        if requeued:
                            log.info("put back %d job(s) whose lease had lapsed", requeued)
                        if promoted:
                            log.debug("promoted %d due job(s)", promoted)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        finally:
            if self._backend is None:
                await queue.close()
        log.info("timers stopped: %d promoted, %d requeued", self.promoted, self.requeued)


def create_timers(
    settings: Settings,
    *,
    queue: str = DEFAULT_QUEUE,
    interval_s: float = TIMERS_INTERVAL_S,
    batch: int = TIMERS_BATCH,
    backend: QueueBackend | None = None,
) -> Timers:
    return Timers(settings, queue=queue, interval_s=interval_s, batch=batch, backend=backend)


async def serve(timers: Timers) -> None:
    shutdown = ShutdownSignal()
    shutdown.install()
    await timers.run(shutdown.event)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.01 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be from 0.01 to 3600 seconds, got {text}")
    return value


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="opsctl daemon timers",
        description="Move due delayed jobs and retries to ready; requeue lapsed leases.",
    )
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="queue name (default %(default)s)")
    parser.add_argument(
        "--interval",
        type=_interval,
        default=TIMERS_INTERVAL_S,
        help="seconds between passes (default %(default)s)",
    )
    args = parser.parse_args(argv)

    def body() -> int:
        settings = load_settings()
        run_preflight(settings)
        configure_logging(settings)
        asyncio.run(serve(create_timers(settings, queue=args.queue, interval_s=args.interval)))
        return 0

    run_entry(body, program="opsctl daemon timers")


if __name__ == "__main__":
    main()
