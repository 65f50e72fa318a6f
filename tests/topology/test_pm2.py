"""PM2 for real: the committed ecosystem.config.js starts every process type and stops clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsctl.topology import TOPOLOGY
from tests._support import OPSCTL, clean_env, free_port
from tests.topology.conftest import alive, kill_marked, processes_with_env

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PM2_PREFIX = Path(os.environ.get("OPSCTL_TEST_PM2_PREFIX", "~/.cache/opsctl-test-pm2")).expanduser()


def pm2_binary() -> Path:
    """pm2 installed once into a cache prefix (npm install --prefix), reused by later runs."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    binary = PM2_PREFIX / "node_modules" / ".bin" / "pm2"
    if not binary.exists():
        PM2_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(PM2_PREFIX), "--no-audit", "--no-fund", "pm2"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return binary


@pytest.fixture
def pm2(short_dir: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    binary = pm2_binary()
    env = clean_env(
        {
            "PM2_HOME": str(short_dir / "pm2"),
            "OPSCTL_DATA_DIR": str(short_dir / "data"),
            "OPSCTL_REDIS_PREFIX": f"opsctl-pm2-{short_dir.name}",
            "PORT": str(free_port()),
        }
    )
    yield binary, env
    subprocess.run([str(binary), "kill"], env=env, capture_output=True, timeout=60)
    kill_marked("PM2_HOME", env["PM2_HOME"])


def jlist(binary: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(binary), "jlist"], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    start = out.stdout.find("[")  # pm2 may print a banner before the JSON
    apps: list[dict[str, Any]] = json.loads(out.stdout[start:])
    return apps


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else None


def test_pm2_runs_every_process_type_and_leaves_nothing(
    pm2: tuple[Path, dict[str, str]],
) -> None:
    binary, env = pm2
    # The committed file, beside a .venv whose opsctl is the one under test (CI may install
    # opsctl elsewhere than the repository's own .venv).
    app_dir = Path(env["OPSCTL_DATA_DIR"]).parent / "app"
    (app_dir / ".venv" / "bin").mkdir(parents=True)
    (app_dir / ".venv" / "bin" / "opsctl").symlink_to(OPSCTL)
    shutil.copy(REPO / "ecosystem.config.js", app_dir)
    started = subprocess.run(
        [str(binary), "start", str(app_dir / "ecosystem.config.js")],
        env=env,
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    logs = Path(env["OPSCTL_DATA_DIR"]) / "logs"
    expected = sum(p.instances for p in TOPOLOGY)

    deadline = time.monotonic() + 45
    apps: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        apps = jlist(binary, env)
        online = [a for a in apps if a["pm2_env"]["status"] == "online"]
        if len(online) == expected and all(a["pm2_env"]["restart_time"] == 0 for a in apps):
            break
        time.sleep(0.5)
    else:
        states = [(a["name"], a["pm2_env"]["status"]) for a in apps]
        raise AssertionError(f"apps not online: {states}\n{_tail(logs)}")
    assert sorted({a["name"] for a in apps}) == sorted(p.name for p in TOPOLOGY)

    base = f"http://127.0.0.1:{env['PORT']}"
    heartbeat: Any = None
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        try:
            live, _ = get_json(f"{base}/api/health/live")
            code, heartbeat = get_json(f"{base}/api/production/queue/heartbeat")
        except (OSError, ValueError):
            time.sleep(0.3)
            continue
        if live == 200 and code == 200 and heartbeat["status"]["status"] == "pass":
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no passing heartbeat: {heartbeat}\n{_tail(logs)}")

    pids = [a["pid"] for a in apps]
    assert all(alive(pid) for pid in pids)
    assert {a["pm2_env"]["pm_exec_path"] for a in apps} == {str(app_dir / ".venv/bin/opsctl")}
    assert sorted(p.name for p in logs.iterdir()) == sorted(
        f"{p.name}.{stream}.log" for p in TOPOLOGY for stream in ("out", "err")
    )

    for command in (["delete", "all"], ["kill"]):
        result = subprocess.run(
            [str(binary), *command], env=env, capture_output=True, text=True, timeout=90
        )
        assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        any(alive(pid) for pid in pids) or processes_with_env("PM2_HOME", env["PM2_HOME"])
    ):
        time.sleep(0.2)
    assert not [pid for pid in pids if alive(pid)]
    assert processes_with_env("PM2_HOME", env["PM2_HOME"]) == []
    assert processes_with_env("OPSCTL_DATA_DIR", env["OPSCTL_DATA_DIR"]) == []


def _tail(logs: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-5:])
        for path in sorted(logs.glob("*.log"))
    )
