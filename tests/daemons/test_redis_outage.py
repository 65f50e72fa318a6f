"""A worker whose Redis restarts under it: one clear line, a reconnect, and it carries on."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from opsctl.queue import NewJob, QueueBackend, connect_queue
from tests._support import Daemon, free_port
from tests.daemons.conftest import build_stack, eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


class PrivateRedis:
    """A redis-server of the test's own, on a free port, with nothing persisted."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


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

        private_redis.stop()

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
