"""``opsctl check queue`` judges as the heartbeat does: dead letters pass, the embedded queue
fails in production, due delayed work that nothing promotes fails ``promotion``."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from opsctl.queue import Heartbeat, NewJob, connect_queue
from opsctl.settings import load_settings
from tests._support import run_opsctl

TOKEN = "c" * 64


def check(env: dict[str, str], cwd: Path) -> tuple[int, dict[str, Any]]:
    ran = run_opsctl("check", "queue", "--json", env=env, cwd=cwd)
    assert "Traceback" not in ran.stderr
    return ran.returncode, json.loads(ran.stdout)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


async def live_worker_and(env: dict[str, str], cwd: Path, *, dead: int = 0, due: int = 0) -> None:
    queue = await connect_queue(load_settings(env, cwd=cwd))
    try:
        await queue.beat(Heartbeat("far:1", "worker", time.time()), ttl_s=60)
        if dead:
            await queue.enqueue_many([NewJob("doomed", max_attempts=1) for _ in range(dead)])
            for job in await queue.reserve(dead, owner="t", lease_s=30):
                assert await queue.fail(job, "no", retry_at=None) == "dead"
        if due:
            await queue.enqueue_many([NewJob("later", delay_s=0.05) for _ in range(due)])
    finally:
        await queue.close()


def test_dead_letters_exit_0_with_the_count(tmp_path: Path) -> None:
    env = {"OPSCTL_DATA_DIR": str(tmp_path / "data")}
    asyncio.run(live_worker_and(env, tmp_path, dead=3))
    code, report = check(env, tmp_path)
    assert (code, report["status"]) == (0, "pass")
    assert list(statuses(report)) == ["queue", "workers", "draining", "promotion", "dead_letters"]
    dead = report["checks"][-1]
    assert (dead["status"], dead["observed"]) == ("pass", 3)
    assert dead["reason"] == "3 dead-lettered job(s); see opsctl queue dead"


def test_the_embedded_queue_fails_in_production_only(tmp_path: Path) -> None:
    env = {"OPSCTL_DATA_DIR": str(tmp_path / "data")}
    asyncio.run(live_worker_and(env, tmp_path))
    assert check(env, tmp_path)[0] == 0
    production = {**env, "OPSCTL_ENV": "production", "OPSCTL_API_TOKEN": TOKEN}
    code, report = check(production, tmp_path)
    assert (code, report["status"]) == (1, "fail")
    assert statuses(report) == {
        "queue": "fail",
        "workers": "pass",
        "draining": "pass",
        "promotion": "pass",
        "dead_letters": "pass",
    }
    assert report["checks"][0]["reason"] == (
        "the queue is the embedded SQLite one; production needs Redis (QUEUE_REDIS_URL)"
    )


def test_due_work_nothing_promotes_fails_past_the_threshold(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    env = {
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "QUEUE_DRAIN_THRESHOLD_S": "0.5",
    }
    asyncio.run(live_worker_and(env, tmp_path, due=2))
    give_up = time.monotonic() + 15
    while (result := check(env, tmp_path))[0] != 1:
        assert time.monotonic() < give_up, result
        time.sleep(0.1)
    report = result[1]
    assert statuses(report)["promotion"] == "fail"
    promotion = next(c for c in report["checks"] if c["name"] == "promotion")
    assert promotion["reason"].startswith("2 delayed job(s) due and not promoted")
    assert promotion["observed"] > 0.5 and promotion["unit"] == "s"
    table = run_opsctl("check", "queue", env=env, cwd=tmp_path)
    assert table.returncode == 1 and table.stdout.splitlines()[-1] == "queue: fail"
