"""The whole stack as real processes on Redis and PostgreSQL, guarded by the gate and curl."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from opsctl.constants import HEARTBEAT_TTL_S
from tests._support import Daemon, clean_env, free_port, run_opsctl

# The documented guard (docs/operations/monitoring.md), fail-closed in sh, which has no pipefail.
CURL_GUARD = (
    'test "$(curl -fsS "$APP_URL/api/production/queue/heartbeat" | jq -r .status.status)" = pass'
)


def curl_guard(app_url: str) -> subprocess.CompletedProcess[str]:
    """The documented guard, exactly as written, run by sh as a CI step runs it."""
    return subprocess.run(
        ["sh", "-c", CURL_GUARD],
        env=clean_env({"APP_URL": app_url}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_stack_passes_the_gate_then_fails_when_workers_stop(
    daemons: Callable[..., Daemon], tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    env = {
        "DATABASE_URL": pg_url,
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "PORT": str(port),
        "APP_URL": app_url,
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
    }
    web = daemons("daemon", "web", env=env, log_name="web.log")
    workers = [
        daemons("daemon", "worker", "--concurrency", "4", env=env, log_name=f"worker{i}.log")
        for i in range(2)
    ]
    timers = daemons("daemon", "timers", env=env, log_name="timers.log")
    web.wait_http(f"{app_url}/api/health/live")

    deadline = time.monotonic() + 30
    while curl_guard(app_url).returncode != 0:
        assert time.monotonic() < deadline, web.output
        time.sleep(0.2)

    gate = run_opsctl("deploy-gate", "--canary", "--timeout", "30", "--json", env=env, cwd=tmp_path)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    report = json.loads(gate.stdout)
    assert report["status"] in ("pass", "warn")  # readiness warns: no definitions here
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["workers"]["observed"] == 2
    assert checks["canary"]["status"] == "pass"
    assert report["canary"]["worker"].split(":")[1] in {str(w.proc.pid) for w in workers}

    check = run_opsctl("check", "queue", env=env, cwd=tmp_path)
    assert check.returncode == 0 and "2 worker(s) alive" in check.stdout

    for worker in workers:
        assert worker.stop() == 0
    # A worker stopped cleanly deletes its heartbeat: the very first round fails, well
    # within twice the TTL (a killed worker's lapse is the next test).
    stopped = time.monotonic()
    failed = run_opsctl(
        "deploy-gate",
        "--timeout",
        "2",
        "--interval",
        "0.5",
        "--json",
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert failed.returncode == 1
    assert time.monotonic() - stopped <= 2 * HEARTBEAT_TTL_S
    assert json.loads(failed.stdout)["rounds"] >= 2  # it retried, and kept failing
    reasons = {
        c["name"]: c["reason"] for c in json.loads(failed.stdout)["checks"] if c["status"] == "fail"
    }
    assert reasons["workers"].startswith("no worker heartbeat is fresh")
    guard = curl_guard(app_url)
    assert guard.returncode != 0
    assert "503" in guard.stderr
    assert timers.proc.poll() is None and web.proc.poll() is None
