"""arq: the worker settings, bulk enqueue and latency driver (runs in arq's own virtualenv).

The worker runs with arq's defaults except ``max_jobs`` (the bench's concurrency, 10 like
opsctl's default) and ``poll_delay`` (``BENCH_ARQ_POLL_DELAY``: arq reads at most 100 ids a
poll, so its default 0.5 s caps it near 200 jobs/s on a full queue). It is started through
:func:`arq.worker.run_worker`, not arq's CLI, so arq's per-job INFO lines are not formatted,
as opsctl's worker runs at WARNING.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import run_worker

from _peers._common import QUEUE, REDIS_URL, main, mark, stamp

POLL_DELAY_S = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.005"))
MAX_JOBS = int(os.environ.get("BENCH_CONCURRENCY", "10"))
ENQUEUE_CONCURRENCY = 100  # enqueue_job calls in flight at once (arq has no bulk enqueue)


async def noop(ctx: dict[str, Any]) -> None:
    mark()


async def stamp_job(ctx: dict[str, Any], key: str) -> None:
    stamp(key)


class WorkerSettings:
    functions = [noop, stamp_job]
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    queue_name = QUEUE
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY_S


def bulk_enqueue(n: int) -> None:
    async def go() -> None:
        pool = await create_pool(WorkerSettings.redis_settings, default_queue_name=QUEUE)
        try:
            for start in range(0, n, ENQUEUE_CONCURRENCY):
                size = min(ENQUEUE_CONCURRENCY, n - start)
                await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(size)))
        finally:
            await pool.aclose()

    asyncio.run(go())


class _Stamper:
    """One event loop and pool for the whole latency loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(
            create_pool(WorkerSettings.redis_settings, default_queue_name=QUEUE)
        )

    def __call__(self, key: str) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job("stamp_job", key))


def enqueue_stamp(key: str) -> None:
    global _stamper
    if _stamper is None:
        _stamper = _Stamper()
    _stamper(key)


_stamper: _Stamper | None = None


if __name__ == "__main__":
    main(
        bulk_enqueue=bulk_enqueue,
        enqueue_stamp=enqueue_stamp,
        run_worker=lambda: run_worker(WorkerSettings),  # type: ignore[arg-type]
        describe=f"arq {version('arq')}, max_jobs={MAX_JOBS}, poll_delay={POLL_DELAY_S:g} s, "
        f"enqueue_job x{ENQUEUE_CONCURRENCY} concurrent",
    )
