"""The worker daemon as a real process: crashes, drains and bad jobs lose nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from opsctl.errors import QueueError
from opsctl.queue import NewJob, QueueBackend
from tests._support import Daemon
from tests.daemons.conftest import Stack, eventually

pytestmark = pytest.mark.slow

StartDaemon = Callable[..., Daemon]


def worker_args(*extra: str) -> list[str]:
    return ["daemon", "worker", "--import", "testjobs", *extra]


async def all_done(queue: QueueBackend, ids: list[str]) -> bool:
    for job_id in ids:
        info = await queue.get(job_id)
        if info is None or info.status != "done":
            return False
    return True


async def test_kill_9_mid_batch_loses_no_job(
    stack: Stack, queue: QueueBackend, daemons: StartDaemon
) -> None:
    ids = await queue.enqueue_many([NewJob("test.record", {"sleep": 0.02}) for _ in range(200)])
    first = daemons(
        *worker_args("--concurrency", "10", "--lease", "2"), env=stack.env, log_name="first.log"
    )

    async def some_ran() -> bool:
        return len(stack.runs()) >= 50

    await eventually(some_ran, what="50 runs")
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(5)
    killed_at = len(stack.runs())
    assert killed_at < 200, "the worker finished before it was killed; the test proves nothing"

    second = daemons(
        *worker_args("--concurrency", "10", "--lease", "2"), env=stack.env, log_name="second.log"
    )
    await eventually(lambda: all_done(queue, ids), within=30, what="every job done")

    runs = stack.runs()
    counts = stack.run_counts()
    assert set(counts) == set(ids), "a job was lost"
    duplicated = {job_id for job_id, n in counts.items() if n > 1}
    # Only jobs the killed worker held (at most its concurrency plus results not yet
    # acknowledged) run twice, and their second run is the new worker's.
    assert len(duplicated) <= 20, duplicated
    first_runner = {}
    for job_id, _, worker in runs:
        first_runner.setdefault(job_id, worker)
    second_id = f"{os.uname().nodename}:{second.proc.pid}"
    for job_id in duplicated:
        assert first_runner[job_id] != second_id
        assert {w for j, _, w in runs if j == job_id} >= {second_id}
    assert second.proc.poll() is None
    assert "Traceback" not in second.output


async def test_sigterm_drains_then_exits_0_and_loses_nothing(
    stack: Stack, queue: QueueBackend, daemons: StartDaemon
) -> None:
    long_id = await queue.enqueue(NewJob("test.record", {"sleep": 3}))
    short = await queue.enqueue_many([NewJob("test.record", {"sleep": 0.4}) for _ in range(3)])
    waiting = await queue.enqueue_many([NewJob("test.record", {"sleep": 0.1}) for _ in range(10)])
    worker = daemons(*worker_args("--concurrency", "4", "--drain-deadline", "1"), env=stack.env)

    async def four_running() -> bool:
        return (await queue.stats()).active >= 4

    await eventually(four_running, what="four jobs running")
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 0, worker.output
    took = time.monotonic() - signalled
    assert took < 1 + 1.5, f"exit took {took:.1f} s, past the 1 s drain deadline"

    # The running short jobs finished; the long one was put back, as were the unstarted.
    counts = stack.run_counts()
    assert all(counts[i] == 1 for i in short)
    long_info = await queue.get(long_id)
    assert long_info is not None and long_info.status == "ready"
    assert long_info.attempts == 0, "a released run must not count as an attempt"
    assert "releasing them" in worker.output
    assert (await queue.stats()).active == 0

    # Nothing was lost: another worker finishes every job, each exactly once.
    daemons(*worker_args("--concurrency", "20"), env=stack.env)
    everything = [long_id, *short, *waiting]
    await eventually(lambda: all_done(queue, everything), within=20, what="every job done")
    assert all(n == 1 for n in stack.run_counts().values())
    assert sorted(stack.run_counts()) == sorted(everything)


async def test_bad_jobs_are_dead_lettered_with_their_reason(
    stack: Stack, queue: QueueBackend, daemons: StartDaemon
) -> None:
    ids = {
        "unknown": await queue.enqueue(NewJob("no.such.kind", {"x": 1})),
        "boom": await queue.enqueue(NewJob("test.boom", {"n": 7})),
        "hang": await queue.enqueue(NewJob("test.hang")),
        "bad_result": await queue.enqueue(NewJob("test.badresult")),
        "canary": await queue.enqueue(NewJob("canary", {"probe": 1})),
    }
    worker = daemons(*worker_args("--maintenance-interval", "0.2"), env=stack.env)

    async def settled() -> bool:
        infos = [await queue.get(i) for i in ids.values()]
        return all(i is not None and i.status in ("dead", "done") for i in infos)

    await eventually(settled, within=20, what="every job dead or done")
    info: dict[str, Any] = {name: await queue.get(job_id) for name, job_id in ids.items()}

    unknown = info["unknown"]
    assert unknown.status == "dead" and unknown.attempts == 1
    assert "unknown job kind 'no.such.kind'" in unknown.last_error
    assert "canary" in unknown.last_error and "test.record" in unknown.last_error

    boom = info["boom"]
    assert boom.status == "dead" and boom.attempts == 2, "retried once, then dead (max 2)"
    assert boom.last_error == "ValueError: boom {'n': 7}"

    hang = info["hang"]
    assert hang.status == "dead" and hang.last_error == "timed out after 0.5 s"

    bad = info["bad_result"]
    assert bad.status == "dead" and "not JSON-serialisable" in bad.last_error

    canary = info["canary"]
    assert canary.status == "done"
    assert canary.result["ok"] is True and canary.result["echo"] == {"probe": 1}
    assert canary.result["worker"] == f"{os.uname().nodename}:{worker.proc.pid}"

    assert (await queue.stats()).failed == 4
    assert worker.proc.poll() is None, "the worker must survive bad jobs"
    assert "Traceback" in worker.output and "ValueError: boom" in worker.output
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 0


async def test_a_payload_that_is_not_json_is_refused_at_enqueue(queue: QueueBackend) -> None:
    with pytest.raises(QueueError, match="not JSON-serialisable"):
        await queue.enqueue(NewJob("noop", {"when": object()}))
    assert (await queue.stats()).waiting == 0
