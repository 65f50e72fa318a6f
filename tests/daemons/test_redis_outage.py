"""A worker whose Redis restarts under it: one clear line, a reconnect, and it carries on."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from opsctl.queue import NewJob, QueueBackend, connect_queue
from tests._support import Daemon, PrivateRedis
from tests.daemons.conftest import build_stack, eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


async def _run_canaries(queue: QueueBackend, n: int) -> None:
    ids = await queue.enqueue_many([NewJob("canary", {"i": i}) for i in range(n)])

    async def done() -> bool:
        infos = [await queue.get(i) for i in ids]
        return all(info is not None and info.status == "done" for info in infos)

    await eventually(done, within=15, what=f"{n} canaries done")


async def test_worker_survives_a_redis_restart(
    private_redis: PrivateRedis, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    stack = build_stack("redis", tmp_path, private_redis.url, "outage")
    worker = daemons("daemon", "worker", env=stack.env)
    queue = await connect_queue(stack.settings)
    try:
        await _run_canaries(queue, 20)

        private_redis.kill()

        async def lost_logged() -> bool:
            return "lost the queue backend" in worker.output

        await eventually(lost_logged, within=10, what="the outage logged")
        await asyncio.sleep(1.0)  # several retries while Redis is away
        assert worker.proc.poll() is None, worker.output

        private_redis.start()

        async def reconnected() -> bool:
            return "reconnected to the queue backend" in worker.output

        await eventually(reconnected, within=15, what="the reconnect logged")
        await queue.close()  # the test's own connections died with the old server
        queue = await connect_queue(stack.settings)
        await _run_canaries(queue, 20)
    finally:
        await queue.close()

    lines = worker.output.splitlines()
    lost = [line for line in lines if "lost the queue backend" in line]
    assert len(lost) == 1, "one line for the outage, not one per retry"
    assert f"127.0.0.1:{private_redis.port}" in lost[0]
    assert "Traceback" not in worker.output
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 0
