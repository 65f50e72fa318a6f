"""``opsctl queue …`` run as the installed command against a real Redis."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from opsctl.queue import NewJob, QueueBackend, connect_queue
from opsctl.settings import load_settings
from tests._support import Daemon, free_port, run_opsctl

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return {
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
    }


@pytest.fixture
async def queue(env: dict[str, str], tmp_path: Path) -> AsyncIterator[QueueBackend]:
    backend = await connect_queue(load_settings(env, cwd=tmp_path))
    yield backend
    await backend.close()


def ok(*args: str, env: dict[str, str]) -> str:
    result = run_opsctl(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(code: int, *args: str, env: dict[str, str]) -> str:
    """Run a command that must fail with ``code`` and one line on stderr, no traceback."""
    result = run_opsctl(*args, env=env)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


async def make_dead(queue: QueueBackend, n: int) -> list[str]:
    ids = await queue.enqueue_many([NewJob("report", {"n": i}, max_attempts=1) for i in range(n)])
    for job in await queue.reserve(n, owner="test:1", lease_s=30):
        assert await queue.fail(job, "RuntimeError: vendor said no", retry_at=None) == "dead"
    return ids


async def test_stats_enqueue_and_job(env: dict[str, str], queue: QueueBackend) -> None:
    stats = json.loads(ok("queue", "stats", "--json", env=env))
    assert stats["backend"] == "redis" and stats["waiting"] == 0 and stats["processes"] == []

    job_id = ok("queue", "enqueue", "canary", "--payload", '{"a": 1}', env=env).strip()
    delayed = json.loads(ok("queue", "enqueue", "noop", "--delay", "60", "--json", env=env))["id"]
    stats = json.loads(ok("queue", "stats", "--json", env=env))
    assert (stats["waiting"], stats["delayed"]) == (1, 1)
    assert "waiting" in ok("queue", "stats", env=env)

    job = json.loads(ok("queue", "job", job_id, "--json", env=env))
    assert job["kind"] == "canary" and job["payload"] == {"a": 1} and job["status"] == "ready"
    assert json.loads(ok("queue", "job", delayed, "--json", env=env))["status"] == "delayed"
    assert "canary" in ok("queue", "job", job_id, env=env)

    key = ["--idempotency-key", "order-7"]
    first = ok("queue", "enqueue", "noop", *key, env=env)
    assert ok("queue", "enqueue", "noop", *key, env=env) == first


async def test_bad_arguments_give_one_line_and_exit_2_or_1(env: dict[str, str]) -> None:
    assert "not valid JSON" in refused(2, "queue", "enqueue", "noop", "--payload", "{", env=env)
    assert "is not valid" in refused(2, "queue", "enqueue", "no good", env=env)
    refused(2, "queue", "enqueue", "noop", "--delay", "-1", env=env)
    refused(2, "queue", "dead", "--limit", "0", env=env)
    assert "no job nope" in refused(1, "queue", "job", "nope", env=env)
    assert "job ids, or --all" in refused(2, "queue", "retry-dead", env=env)
    assert "not both" in refused(2, "queue", "purge-dead", "x", "--all", "--yes", env=env)


async def test_dead_retry_and_purge(env: dict[str, str], queue: QueueBackend) -> None:
    assert json.loads(ok("queue", "dead", "--json", env=env)) == []
    ids = await make_dead(queue, 3)

    dead = json.loads(ok("queue", "dead", "--json", env=env))
    assert {d["id"] for d in dead} == set(ids)
    assert all(d["last_error"] == "RuntimeError: vendor said no" for d in dead)
    assert len(json.loads(ok("queue", "dead", "--limit", "2", "--json", env=env))) == 2
    assert "vendor said no" in ok("queue", "dead", env=env)

    # Unknown or live ids are refused, all named at once, and nothing moves.
    live = ok("queue", "enqueue", "noop", env=env).strip()
    err = refused(1, "queue", "retry-dead", ids[0], "missing-1", live, env=env)
    assert "missing-1" in err and live in err
    assert json.loads(ok("queue", "stats", "--json", env=env))["failed"] == 3

    retried = json.loads(ok("queue", "retry-dead", ids[0], "--json", env=env))
    assert retried == {"queue": "default", "retried": 1}
    info = await queue.get(ids[0])
    assert info is not None and info.status == "ready" and info.attempts == 0

    # Purging asks first; without a terminal, --yes is required.
    assert "--yes" in refused(2, "queue", "purge-dead", "--all", env=env)
    purged = json.loads(ok("queue", "purge-dead", ids[1], "--yes", "--json", env=env))
    assert purged["purged"] == 1 and await queue.get(ids[1]) is None
    assert "retried 1" in ok("queue", "retry-dead", "--all", env=env)
    assert json.loads(ok("queue", "dead", "--json", env=env)) == []
    await make_dead(queue, 2)
    assert json.loads(ok("queue", "purge-dead", "--all", "-y", "--json", env=env))["purged"] == 2


async def test_an_unreachable_redis_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        "OPSCTL_DATA_DIR": str(tmp_path),
        "QUEUE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    err = refused(1, "queue", "stats", env=env)
    assert len(err.strip().splitlines()) == 1
    assert "cannot reach Redis at redis://127.0.0.1:" in err


def test_the_worker_heartbeat_shows_in_stats_and_leaves_on_exit(
    env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    worker = daemons("daemon", "worker", "--concurrency", "3", env=env)
    deadline = time.monotonic() + 10
    processes: list[dict[str, Any]] = []
    while not processes and time.monotonic() < deadline:
        time.sleep(0.1)
        processes = json.loads(ok("queue", "stats", "--json", env=env))["processes"]
    assert len(processes) == 1
    beat = processes[0]
    assert beat["id"] == f"{os.uname().nodename}:{worker.proc.pid}"
    assert beat["role"] == "worker" and beat["live"] is True
    assert beat["extra"]["concurrency"] == 3 and beat["version"]
    assert worker.stop() == 0
    assert json.loads(ok("queue", "stats", "--json", env=env))["processes"] == []
