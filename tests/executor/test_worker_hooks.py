"""What the worker gives job kinds for the executor: rescheduling, and shared resources."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from daemons.worker import WorkerOptions, create_worker
from opsctl.queue import NewJob, connect_queue
from opsctl.queue.kinds import JobContext, KindRegistry, Reschedule, registry
from opsctl.settings import Settings
from tests.conftest import SettingsFactory

FAST = WorkerOptions(concurrency=2, maintenance_s=0.1, reserve_wait_s=0.05)


async def settle(queue: Any, job_id: str, within: float = 10) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        info = await queue.get(job_id)
        if info is not None and info.status in ("done", "dead"):
            return info
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish within {within} s")


@pytest.fixture(params=["sqlite", "redis"])
def settings(
    request: pytest.FixtureRequest,
    make_settings: SettingsFactory,
    redis_url: str,
    redis_prefix: str,
) -> Settings:
    if request.param == "redis":
        return make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix)
    return make_settings()


async def test_reschedule_goes_through_the_delayed_set_without_counting_as_a_failure(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    kinds = KindRegistry()
    statuses: list[str] = []
    runs: list[int] = []

    @kinds.kind("later", max_attempts=1)
    async def later(payload: Any, ctx: JobContext) -> dict[str, Any]:
        runs.append(ctx.job.attempt)
        if len(runs) == 1:
            raise Reschedule(time.time() + 0.3, "the vendor said: come back in 0.3 s")
        return {"attempt": ctx.job.attempt}

    queue = await connect_queue(settings)
    worker = create_worker(settings, kinds=kinds, options=FAST, backend=queue)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        job_id = await queue.enqueue(NewJob("later", max_attempts=3))
        started = time.monotonic()
        while time.monotonic() - started < 5:
            info = await queue.get(job_id)
            assert info is not None
            statuses.append(info.status)
            if info.status == "done":
                break
            await asyncio.sleep(0.02)
        info = await settle(queue, job_id)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await queue.close()
    assert "delayed" in statuses
    # The reschedule did not count as a run: the second run is attempt 1 again.
    assert runs == [1, 1]
    assert info.status == "done" and info.result == {"attempt": 1}
    assert (info.attempts, info.last_error) == (1, None)
    assert info.deferred_reason == "the vendor said: come back in 0.3 s"
    assert elapsed >= 0.25
    # The kind allows one failed run, yet the reschedule was not one.
    assert (worker.failed, worker.rescheduled, worker.processed) == (0, 1, 1)
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "later" in r.message]


async def test_a_job_rescheduled_past_its_attempt_limit_still_finishes(
    settings: Settings,
) -> None:
    kinds = KindRegistry()
    runs: list[int] = []

    @kinds.kind("throttled", max_attempts=3)
    async def throttled(payload: Any, ctx: JobContext) -> dict[str, Any]:
        runs.append(ctx.job.attempt)
        if len(runs) <= 8:
            raise Reschedule(time.time() + 0.01, f"rate limited ({len(runs)})")
        return {"runs": len(runs)}

    queue = await connect_queue(settings)
    worker = create_worker(settings, kinds=kinds, options=FAST, backend=queue)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        job_id = await queue.enqueue(NewJob("throttled", max_attempts=3))
        info = await settle(queue, job_id, within=20)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await queue.close()
    assert (info.status, info.result) == ("done", {"runs": 9})
    assert runs == [1] * 9
    assert (info.attempts, info.last_error, info.deferred_reason) == (1, None, "rate limited (8)")
    assert (worker.failed, worker.rescheduled, worker.processed, worker.stale) == (0, 8, 1, 0)


async def test_a_reschedule_to_no_time_at_all_is_a_failed_run(settings: Settings) -> None:
    kinds = KindRegistry()

    @kinds.kind("confused", max_attempts=1)
    async def confused(payload: Any, ctx: JobContext) -> None:
        raise Reschedule(float("nan"), "the vendor sent nonsense")

    queue = await connect_queue(settings)
    worker = create_worker(settings, kinds=kinds, options=FAST, backend=queue)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        job_id = await queue.enqueue(NewJob("confused"))
        info = await settle(queue, job_id)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await queue.close()
    assert (info.status, info.attempts) == ("dead", 1)
    assert info.last_error == "rescheduled to nan, which is not a time (the vendor sent nonsense)"
    assert (worker.failed, worker.rescheduled) == (1, 0)


async def test_resources_open_once_on_first_use_and_close_with_the_worker(
    settings: Settings,
) -> None:
    kinds = KindRegistry()
    events: list[str] = []

    @kinds.resource("counter")
    @asynccontextmanager
    async def counter(settings: Settings) -> AsyncIterator[dict[str, int]]:
        events.append("open")
        yield {"n": 0}
        events.append("close")

    @kinds.kind("count")
    async def count(payload: Any, ctx: JobContext) -> int:
        assert ctx.resources is not None
        shared = await ctx.resources.get("counter")
        shared["n"] += 1
        return int(shared["n"])

    queue = await connect_queue(settings)
    worker = create_worker(settings, kinds=kinds, options=FAST, backend=queue)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        ids = await queue.enqueue_many([NewJob("count") for _ in range(5)])
        results = sorted([(await settle(queue, i)).result for i in ids])
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await queue.close()
    assert results == [1, 2, 3, 4, 5]
    assert events == ["open", "close"]


def test_connector_execute_is_a_built_in_kind_with_its_resource(tmp_path: Path) -> None:
    assert "connector.execute" in registry
    assert "connectors" in registry.resource_factories()
    assert "connectors" in registry.copy().resource_factories()
