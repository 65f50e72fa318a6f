"""The queue heartbeat of a real fleet: `opsctl daemon web` and workers as processes on Redis.

What a strict guard (``.status.status == "pass"``) lives with: dead letters leave it passing, a
worker killed with SIGKILL and replaced passes again within two heartbeat TTLs, no worker is a
503 within one TTL (at once after a clean stop), and due delayed work that nothing promotes
fails ``promotion``. Every wait polls with a deadline drawn from the real TTLs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opsctl.constants import HEARTBEAT_TTL_S
from opsctl.queue import NewJob, connect_queue
from opsctl.settings import load_settings
from tests._support import Daemon, free_port

pytestmark = pytest.mark.slow

TOKEN = "fleet-test-token-0123456789abcdef"
SLACK_S = 5.0  # scheduling on a loaded two-core machine, on top of what the TTLs allow


class Fleet:
    """A web daemon and workers sharing one Redis prefix, and the heartbeat they answer."""

    def __init__(self, daemons: Callable[..., Daemon], env: dict[str, str], tmp_path: Path):
        self._daemons = daemons
        self.env = env
        self.tmp_path = tmp_path
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.web = daemons("daemon", "web", env={**env, "PORT": str(port)}, log_name="web.log")
        self.web.wait_http(f"{self.base}/api/health/live")

    def start(self, *args: str) -> Daemon:
        return self._daemons("daemon", *args, env=self.env)

    def heartbeat(self) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.base}/api/production/queue/heartbeat",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def wait(
        self, until: Callable[[int, dict[str, Any]], bool], within_s: float, what: str
    ) -> tuple[int, dict[str, Any], list[str]]:
        """Poll the heartbeat until ``until(code, body)``; return it and the statuses seen."""
        give_up = time.monotonic() + within_s
        seen: list[str] = []
        while True:
            code, body = self.heartbeat()
            status = body["status"]["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if until(code, body):
                return code, body, seen
            assert time.monotonic() < give_up, f"not {what} within {within_s} s: {code} {body}"
            time.sleep(0.2)

    def enqueue(self, job: NewJob) -> str:
        async def add() -> str:
            queue = await connect_queue(load_settings(self.env, cwd=self.tmp_path))
            try:
                return await queue.enqueue(job)
            finally:
                await queue.close()

        return asyncio.run(add())


@pytest.fixture
def fleet(
    daemons: Callable[..., Daemon], tmp_path: Path, redis_url: str, redis_prefix: str
) -> Callable[..., Fleet]:
    def make(**extra: str) -> Fleet:
        env = {
            "QUEUE_REDIS_URL": redis_url,
            "OPSCTL_REDIS_PREFIX": redis_prefix,
            "OPSCTL_DATA_DIR": str(tmp_path / "data"),
            "OPSCTL_API_TOKEN": TOKEN,
            **extra,
        }
        return Fleet(daemons, env, tmp_path)

    return make


def alive(n: int) -> Callable[[int, dict[str, Any]], bool]:
    return lambda code, body: body["workers"]["alive"] == n


def passing(code: int, body: dict[str, Any]) -> bool:
    return code == 200 and body["status"]["status"] == "pass"


def test_a_dead_lettered_job_leaves_the_heartbeat_passing(fleet: Callable[..., Fleet]) -> None:
    stack = fleet()
    stack.start("worker")
    stack.wait(lambda c, b: passing(c, b) and alive(1)(c, b), 30, "one worker passing")
    stack.enqueue(NewJob("no-such-kind", {"n": 1}))  # an unknown kind is dead-lettered at once
    code, body, _ = stack.wait(lambda c, b: b["queue"]["failed"] == 1, 30, "dead-lettered")
    assert code == 200, body
    assert body["status"] == {
        "status": "pass",
        "reasons": [],
        "checkedAt": body["status"]["checkedAt"],
    }


def test_a_worker_killed_and_replaced_passes_again_within_two_ttls(
    fleet: Callable[..., Fleet],
) -> None:
    stack = fleet()
    doomed = stack.start("worker")
    stack.wait(lambda c, b: passing(c, b) and alive(1)(c, b), 30, "one worker passing")
    stack.start("worker")  # the replacement, as a platform starts one after an OOM kill
    stack.wait(alive(2), 30, "two workers alive")
    doomed.signal(signal.SIGKILL)
    doomed.proc.wait(10)
    killed = time.monotonic()
    _code, body, seen = stack.wait(
        lambda c, b: passing(c, b) and b["workers"]["stale"] == 1,
        2 * HEARTBEAT_TTL_S + SLACK_S,
        "passing again with the killed worker listed as stale",
    )
    assert time.monotonic() - killed <= 2 * HEARTBEAT_TTL_S + SLACK_S
    assert "fail" not in seen, seen  # a live replacement never fails the fleet
    assert set(seen) <= {"pass", "warn"}
    [stale] = [w for w in body["workers"]["items"] if not w["live"]]
    assert stale["id"].endswith(f":{doomed.proc.pid}")


def test_no_worker_answers_503_within_one_ttl_of_a_kill(fleet: Callable[..., Fleet]) -> None:
    stack = fleet()
    worker = stack.start("worker")
    stack.wait(lambda c, b: passing(c, b) and alive(1)(c, b), 30, "one worker passing")
    worker.signal(signal.SIGKILL)
    worker.proc.wait(10)
    killed = time.monotonic()
    _code, body, _ = stack.wait(lambda c, b: c == 503, HEARTBEAT_TTL_S + SLACK_S, "503")
    assert time.monotonic() - killed <= HEARTBEAT_TTL_S + SLACK_S
    assert body["status"]["status"] == "fail"
    [reason] = body["status"]["reasons"]
    assert reason.startswith("workers: no worker heartbeat is fresh (1 stale, last seen")


def test_no_worker_answers_503_at_once_after_a_clean_stop(fleet: Callable[..., Fleet]) -> None:
    stack = fleet()
    worker = stack.start("worker")
    stack.wait(lambda c, b: passing(c, b) and alive(1)(c, b), 30, "one worker passing")
    assert worker.stop() == 0
    # SIGTERM removes the heartbeat on the way out: the very next read has no worker.
    code, body = stack.heartbeat()
    assert code == 503, body
    assert body["workers"] == {"alive": 0, "stale": 0, "items": []}
    assert body["status"]["reasons"] == [
        "workers: no worker heartbeat is fresh; start a worker: opsctl daemon worker"
    ]


def test_due_delayed_work_with_nothing_to_promote_it_fails_promotion(
    fleet: Callable[..., Fleet],
) -> None:
    stack = fleet(QUEUE_DRAIN_THRESHOLD_S="1")
    stack.start("worker", "--maintenance-interval", "0")  # no fallback promotion, no timers
    stack.wait(lambda c, b: passing(c, b) and alive(1)(c, b), 30, "one worker passing")
    stack.enqueue(NewJob("canary", {}, delay_s=0.2))
    _code, body, _ = stack.wait(lambda c, b: c == 503, 30, "503 for the stuck delayed job")
    [reason] = body["status"]["reasons"]
    assert reason.startswith("promotion: 1 delayed job(s) due and not promoted, the oldest")
    assert reason.endswith("s overdue: is a timers daemon running? opsctl daemon timers")
    assert body["queue"]["delayedDue"] == 1 and body["queue"]["oldestDueAgeSeconds"] > 1
    stack.start("timers")  # what the reason asks for
    _code, body, _ = stack.wait(passing, 30, "passing once a timers daemon promotes it")
    assert body["queue"]["delayedDue"] == 0
