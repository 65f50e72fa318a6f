"""``opsctl status``: the fleet from heartbeats and the queue, with or without ``opsctl up``.

Without a supervisor (PM2, systemd, a platform) it is no error: the exit code is the fleet's
verdict, the heartbeat's own (0 on pass or warn, 1 on fail). Under ``opsctl up`` a supervised
process that failed is exit 1 too.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opsctl.queue import Heartbeat, NewJob, connect_queue
from opsctl.settings import load_settings
from tests._support import Daemon, free_port, run_opsctl

CHECKS = ["queue", "workers", "draining", "promotion", "dead_letters"]


@pytest.fixture
def env(tmp_path: Path, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return {
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
    }


def seed(env: dict[str, str], cwd: Path, *beats: tuple[str, float], jobs: int = 0) -> None:
    """Worker heartbeats (id, TTL) and ready jobs, written as another machine would."""

    async def write() -> None:
        queue = await connect_queue(load_settings(env, cwd=cwd))
        try:
            for process_id, ttl_s in beats:
                heartbeat = Heartbeat(process_id, "worker", time.time(), 2, 40, "0.1.0")
                await queue.beat(heartbeat, ttl_s=ttl_s)
            if jobs:
                await queue.enqueue_many([NewJob("noop") for _ in range(jobs)])
        finally:
            await queue.close()

    asyncio.run(write())


def status_json(env: dict[str, str], cwd: Path) -> tuple[int, dict[str, Any]]:
    ran = run_opsctl("status", "--json", env=env, cwd=cwd)
    assert "Traceback" not in ran.stderr
    body: dict[str, Any] = json.loads(ran.stdout)
    return ran.returncode, body


def test_without_a_supervisor_a_healthy_fleet_exits_0(env: dict[str, str], tmp_path: Path) -> None:
    seed(env, tmp_path, ("far-away:12", 60), jobs=1)
    code, body = status_json(env, tmp_path)
    assert code == 0, body
    assert (body["supervisor"], body["processes"], body["status"]) == (None, [], "pass")
    assert [c["name"] for c in body["checks"]] == CHECKS
    assert body["queue"]["backend"] == "redis"
    assert (body["queue"]["waiting"], body["queue"]["delayedDue"]) == (1, 0)
    [beat] = body["heartbeats"]
    assert beat == {
        "id": "far-away:12",
        "role": "worker",
        "live": True,
        "lastSeenSecondsAgo": beat["lastSeenSecondsAgo"],
        "lastSeenAt": beat["lastSeenAt"],
        "startedAt": beat["startedAt"],
        "inFlight": 2,
        "processed": 40,
        "version": "0.1.0",
    }
    assert beat["startedAt"] <= beat["lastSeenAt"]
    text = run_opsctl("status", env=env, cwd=tmp_path)
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert lines[0] == (
        f"no `opsctl up` supervisor runs for data directory {tmp_path / 'data'}:"
        " the fleet from its heartbeats and the queue"
    )
    assert "queue (redis): 1 waiting, 0 delayed, 0 active, 0 dead" in text.stdout
    assert any(line.startswith("far-away:12") and " live " in line for line in lines)
    assert lines[-1] == "fleet: pass"


def test_a_recent_stale_worker_warns_and_still_exits_0(env: dict[str, str], tmp_path: Path) -> None:
    seed(env, tmp_path, ("far-away:1", 60), ("far-away:2", 0.05))
    give_up = time.monotonic() + 10
    while (result := status_json(env, tmp_path))[1]["status"] != "warn":
        assert time.monotonic() < give_up, result
    code, body = result
    assert code == 0
    workers = next(c for c in body["checks"] if c["name"] == "workers")
    assert workers["reason"].startswith("1 worker(s) alive, 1 stale (last beat")


def test_no_worker_exits_1_and_says_what_to_start(tmp_path: Path) -> None:
    env = {"OPSCTL_DATA_DIR": str(tmp_path / "data")}  # the embedded SQLite queue
    text = run_opsctl("status", env=env, cwd=tmp_path)
    assert text.returncode == 1 and text.stderr == ""
    assert "workers       fail  no worker heartbeat is fresh; start a worker" in text.stdout
    assert text.stdout.splitlines()[-1] == "fleet: fail"
    code, body = status_json(env, tmp_path)
    assert (code, body["supervisor"], body["status"]) == (1, None, "fail")


def test_the_queue_down_exits_1_naming_it(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = {"QUEUE_REDIS_URL": url, "OPSCTL_DATA_DIR": str(tmp_path)}
    result = run_opsctl("status", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert f"queue (redis): unavailable: cannot reach Redis at {url}" in result.stdout
    code, body = status_json(env, tmp_path)
    assert (code, body["queue"], body["status"]) == (1, None, "fail")
    assert body["queueError"].startswith(f"cannot reach Redis at {url}")


@pytest.mark.slow
def test_a_fleet_started_without_up_exits_0_then_1_without_its_worker(
    daemons: Callable[..., Daemon], env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    web = daemons("daemon", "web", env={**env, "PORT": str(port)})
    worker = daemons("daemon", "worker", env=env)
    web.wait_http(f"http://127.0.0.1:{port}/api/health/live")
    give_up = time.monotonic() + 30
    while (result := status_json(env, tmp_path))[0] != 0:
        assert time.monotonic() < give_up, result
        time.sleep(0.2)
    body = result[1]
    assert (body["supervisor"], body["status"]) == (None, "pass")
    roles = {(h["role"], h["id"].rsplit(":", 1)[1]) for h in body["heartbeats"] if h["live"]}
    assert roles == {("web", str(web.proc.pid)), ("worker", str(worker.proc.pid))}
    assert worker.stop() == 0  # SIGTERM: its heartbeat goes with it
    code, body = status_json(env, tmp_path)
    assert (code, body["status"]) == (1, "fail")
    assert [h["role"] for h in body["heartbeats"]] == ["web"]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A data directory short enough for the supervisor's Unix socket."""
    path = Path(tempfile.mkdtemp(prefix="ops-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_under_up_a_failed_process_exits_1_though_the_fleet_passes(
    daemons: Callable[..., Daemon], env: dict[str, str], short_dir: Path
) -> None:
    env = {**env, "OPSCTL_DATA_DIR": str(short_dir / "data"), "PORT": str(free_port())}
    daemons("daemon", "worker", env=env)  # a healthy worker outside the supervisor
    # A worker that cannot import its job module exits 2 at start, and is marked failed.
    up = daemons(
        "up",
        "--only",
        "web,worker",
        "--scale",
        "worker=1",
        env={**env, "OPSCTL_JOB_MODULES": "no_such_module"},
    )
    give_up = time.monotonic() + 30
    while True:
        ran = run_opsctl("status", "--json", env=env, cwd=short_dir)
        body = json.loads(ran.stdout) if ran.stdout else {}
        states = {p["name"]: p["state"] for p in body.get("processes", [])}
        ready = states.get("worker.1") == "failed" and states.get("web.1") == "running"
        if ready and body["status"] == "pass":
            break
        assert up.proc.poll() is None, up.output
        assert time.monotonic() < give_up, (ran.stdout, ran.stderr, up.output)
        time.sleep(0.2)
    assert ran.returncode == 1
    assert body["supervisor"]["pid"] == up.proc.pid
    assert body["status"] == "pass"  # the fleet is fine; the supervised worker is not
    text = run_opsctl("status", env=env, cwd=short_dir)
    assert text.returncode == 1
    assert text.stdout.startswith("PROCESS")
    assert "supervised process(es) failed: worker.1 (opsctl restart NAME)" in text.stdout
    assert text.stdout.splitlines()[-1] == "fleet: pass", text.stdout
