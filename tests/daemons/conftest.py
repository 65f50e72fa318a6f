"""Fixtures for the daemon tests: a queue (Redis or SQLite), job kinds to load, a run record."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from opsctl.queue import QueueBackend, connect_queue
from opsctl.settings import Settings, load_settings

# Loaded by the workers under test with ``--import testjobs`` (PYTHONPATH=tmp_path).
JOBS_MODULE = '''
"""Job kinds for the daemon tests: every run of test.record appends a line to TEST_RECORD."""
import asyncio
import os

from opsctl.queue.kinds import registry

_RECORD = os.environ["TEST_RECORD"]


def _record(ctx):
    line = f"{ctx.job.id} {ctx.job.attempt} {ctx.worker_id}\\n".encode()
    fd = os.open(_RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@registry.kind("test.record", timeout_s=60)
async def record(payload, ctx):
    await asyncio.sleep((payload or {}).get("sleep", 0))
    _record(ctx)
    return {"ok": True}


@registry.kind("test.boom", max_attempts=2)
async def boom(payload, ctx):
    raise ValueError(f"boom {payload}")


@registry.kind("test.hang", timeout_s=0.5, max_attempts=1)
async def hang(payload, ctx):
    await asyncio.sleep(3600)


@registry.kind("test.badresult")
async def bad_result(payload, ctx):
    return {"when": object()}
'''


@dataclass
class Stack:
    """Everything a test needs to run daemons against one queue and read what they did."""

    backend: str
    env: dict[str, str]
    settings: Settings
    record: Path

    def runs(self) -> list[tuple[str, int, str]]:
        """(job id, attempt, worker id) for every finished run of ``test.record``."""
        if not self.record.exists():
            return []
        rows = []
        for line in self.record.read_text().splitlines():
            job_id, attempt, worker = line.split(" ")
            rows.append((job_id, int(attempt), worker))
        return rows

    def run_counts(self) -> Counter[str]:
        return Counter(job_id for job_id, _, _ in self.runs())


def build_stack(backend: str, tmp_path: Path, redis_url: str, redis_prefix: str) -> Stack:
    (tmp_path / "testjobs.py").write_text(JOBS_MODULE)
    env = {
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        "OPSCTL_LOG_FORMAT": "json",
        "PYTHONPATH": str(tmp_path),
        "TEST_RECORD": str(tmp_path / "runs.log"),
    }
    if backend == "redis":
        env |= {"QUEUE_REDIS_URL": redis_url, "OPSCTL_REDIS_PREFIX": redis_prefix}
    settings = load_settings(
        {k: v for k, v in env.items() if k.startswith(("OPSCTL_", "QUEUE_"))}, cwd=tmp_path
    )
    return Stack(backend, env, settings, tmp_path / "runs.log")


@pytest.fixture(params=["redis", "sqlite"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_prefix: str
) -> Stack:
    """A queue on Redis or on SQLite, per the parameter."""
    return build_stack(str(request.param), tmp_path, redis_url, redis_prefix)


@pytest.fixture
def redis_stack(tmp_path: Path, redis_url: str, redis_prefix: str) -> Stack:
    return build_stack("redis", tmp_path, redis_url, redis_prefix)


@pytest.fixture
async def queue(stack: Stack) -> AsyncIterator[QueueBackend]:
    backend = await connect_queue(stack.settings)
    yield backend
    await backend.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 15, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {within} s")
