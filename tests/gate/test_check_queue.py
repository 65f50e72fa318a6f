"""``opsctl check queue``: the gate's queue checks from settings alone, exit 0, 1 or 2."""

from __future__ import annotations

import json
from pathlib import Path

from tests._support import free_port, run_opsctl
from tests.conftest import SettingsFactory
from tests.gate.conftest import add_worker_heartbeat


def test_no_worker_fails_with_1(tmp_path: Path) -> None:
    env = {"OPSCTL_DATA_DIR": str(tmp_path / "data")}
    ran = run_opsctl("check", "queue", "--json", env=env, cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr
    report = json.loads(ran.stdout)
    assert (report["status"], report["backend"]) == ("fail", "sqlite")
    checks = {c["name"]: c for c in report["checks"]}
    assert [c["name"] for c in report["checks"]] == [
        "queue",
        "workers",
        "draining",
        "promotion",
        "dead_letters",
    ]
    assert checks["queue"]["status"] == "pass"
    assert checks["workers"]["status"] == "fail"
    assert checks["workers"]["reason"].startswith("no worker heartbeat is fresh")

    table = run_opsctl("check", "queue", env=env, cwd=tmp_path)
    assert table.returncode == 1
    assert table.stdout.splitlines()[-1] == "queue: fail"


async def test_a_live_worker_on_redis_passes(
    tmp_path: Path, make_settings: SettingsFactory, redis_url: str, redis_prefix: str
) -> None:
    env = {
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
    }
    await add_worker_heartbeat(make_settings(**env))
    ran = run_opsctl("check", "queue", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "workers       pass  1 worker(s) alive" in ran.stdout
    assert "redis queue reachable" in ran.stdout
    assert ran.stdout.splitlines()[-1] == "queue: pass"


def test_unreachable_redis_fails_with_1_naming_it_without_the_password(tmp_path: Path) -> None:
    url = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0"
    env = {"QUEUE_REDIS_URL": url, "OPSCTL_DATA_DIR": str(tmp_path / "data")}
    ran = run_opsctl("check", "queue", "--json", env=env, cwd=tmp_path)
    assert ran.returncode == 1
    [queue] = json.loads(ran.stdout)["checks"]
    assert queue["status"] == "fail"
    shown = url.replace("hunter2", "***")
    assert queue["reason"] == f"cannot reach Redis at {shown}: Connection refused"
    assert "hunter2" not in ran.stdout + ran.stderr


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    ran = run_opsctl("check", "queue", env={"QUEUE_REDIS_URL": "http://x"}, cwd=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.startswith("opsctl: error: QUEUE_REDIS_URL has unknown scheme 'http'")
    assert "Traceback" not in ran.stderr
