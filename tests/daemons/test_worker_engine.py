"""The worker built by its factory, in-process, for the cases a subprocess cannot stage."""

from __future__ import annotations

import asyncio
from typing import Any

from daemons.worker import WorkerOptions, create_worker
from opsctl.queue import NewJob, QueueBackend
from opsctl.queue.kinds import JobContext, KindRegistry
from tests.daemons.conftest import Stack, eventually


async def test_cancellation_and_timeouts_never_cost_a_runner(
    stack: Stack, queue: QueueBackend
) -> None:
    kinds = KindRegistry()

    @kinds.kind("own_cancel", max_attempts=1)
    async def own_cancel(payload: Any, ctx: JobContext) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # a CancelledError the worker did not ask for

    @kinds.kind("stubborn", timeout_s=0.1, max_attempts=1)
    async def stubborn(payload: Any, ctx: JobContext) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None
        return "never"

    @kinds.kind("echo")
    async def echo(payload: Any, ctx: JobContext) -> Any:
        await asyncio.sleep(0.01)
        return {"payload": payload, "attempt": ctx.job.attempt}

    worker = create_worker(
        stack.settings, kinds=kinds, options=WorkerOptions(concurrency=1), backend=queue
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        cancel_id = await queue.enqueue(NewJob("own_cancel"))
        stubborn_id = await queue.enqueue(NewJob("stubborn"))
        echo_ids = await queue.enqueue_many([NewJob("echo", i) for i in range(5)])

        async def settled() -> bool:
            infos = [await queue.get(i) for i in [cancel_id, stubborn_id, *echo_ids]]
            return all(i is not None and i.status in ("dead", "done") for i in infos)

        await eventually(settled, within=10, what="all jobs settled")
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)

    cancelled = await queue.get(cancel_id)
    assert cancelled is not None and cancelled.status == "dead"
    assert cancelled.last_error == "CancelledError"
    late = await queue.get(stubborn_id)
    assert late is not None and late.status == "dead"
    assert late.last_error == "timed out after 0.1 s (RuntimeError: cleanup failed)"
    for i, job_id in enumerate(echo_ids):
        info = await queue.get(job_id)
        assert info is not None and info.result == {"payload": i, "attempt": 1}
    assert worker.processed == 5 and worker.failed == 2
    assert not worker.in_flight
