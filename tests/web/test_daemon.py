"""``opsctl daemon web`` as a real process: start, serve, log, stop on signals, fail fast."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from daemons._signals import ShutdownSignal
from daemons.web import create_app
from daemons.web.main import serve
from opsctl.connections import STARTUP_DEADLINE_S
from tests._support import Daemon, free_port, run_opsctl
from tests.conftest import SettingsFactory


def start_web(daemons: Callable[..., Daemon], tmp_path: Path, **env: str) -> tuple[Daemon, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = daemons(
        "daemon", "web", env={"PORT": str(port), "OPSCTL_DATA_DIR": str(tmp_path / "data"), **env}
    )
    daemon.wait_http(f"{base}/api/health/live")
    return daemon, base


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_stops_cleanly_on_signal(
    daemons: Callable[..., Daemon], tmp_path: Path, sig: signal.Signals
) -> None:
    daemon, base = start_web(daemons, tmp_path)
    with urllib.request.urlopen(f"{base}/api/health/ready", timeout=5) as resp:
        assert json.load(resp)["status"] in ("pass", "warn")
    daemon.signal(sig)
    assert daemon.proc.wait(15) == 0
    records = [json.loads(line) for line in daemon.output.splitlines() if line.strip()]
    messages = [r["msg"] for r in records]
    assert any(m.startswith("listening on http://127.0.0.1:") for m in messages)
    assert f"{sig.name} received: draining, send it again to exit at once" in messages
    assert messages[-1] == "stopped"
    access = [r for r in records if r["msg"] == "GET /api/health/ready 200"]
    assert access and len(access[0]["request_id"]) == 32 and access[0]["status"] == 200


async def test_in_flight_request_finishes_during_drain(make_settings: SettingsFactory) -> None:
    """A request being handled when the shutdown signal arrives still gets its answer."""
    port = free_port()
    settings = make_settings(PORT=str(port))
    app = create_app(settings)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.8)
        return web.json_response({"finished": True})

    app.router.add_get("/slow", slow)
    shutdown = ShutdownSignal()
    server = asyncio.create_task(serve(settings, app=app, shutdown=shutdown, drain_deadline=5))
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"http://127.0.0.1:{port}/api/health/live"):
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        request = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/slow"))
        await asyncio.sleep(0.2)
        shutdown.event.set()
        async with await request as resp:
            assert resp.status == 200
            assert await resp.json() == {"finished": True}
    await asyncio.wait_for(server, 10)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http:
            await http.get(f"http://127.0.0.1:{port}/api/health/live")


def _get(url: str, **headers: str) -> tuple[int, str, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers.get_content_type(), json.load(resp)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get_content_type(), json.load(exc)


def test_health_answers_are_health_json_from_the_process(
    daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """The installed command's answers: the draft's media type on 200 and on 503 alike."""
    token = "operator-token-0123456789abcdef"
    _, base = start_web(daemons, tmp_path, OPSCTL_API_TOKEN=token)
    auth = {"Authorization": f"Bearer {token}"}
    assert _get(f"{base}/api/health/live") == (200, "application/health+json", {"status": "pass"})
    status, kind, ready = _get(f"{base}/api/health/ready", **auth)
    assert (status, kind, ready["status"]) == (200, "application/health+json", "warn")
    assert all(isinstance(check, list) for check in ready["checks"].values())
    # No worker runs beside this web process: the heartbeat fails, 503.
    status, kind, beat = _get(f"{base}/api/production/queue/heartbeat")
    assert (status, kind, beat["status"]["status"]) == (503, "application/health+json", "fail")


def test_text_logs_when_asked(daemons: Callable[..., Daemon], tmp_path: Path) -> None:
    daemon, _ = start_web(daemons, tmp_path, OPSCTL_LOG_FORMAT="text")
    assert daemon.stop() == 0
    first = daemon.output.splitlines()[0]
    assert " info    opsctl.web: " in first and not first.startswith("{")


def test_redis_unreachable_exits_fast_with_one_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = run_opsctl(
        "daemon",
        "web",
        env={"QUEUE_REDIS_URL": url, "PORT": str(free_port()), "OPSCTL_DATA_DIR": str(tmp_path)},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    # It retries a Redis that may still be starting for STARTUP_DEADLINE_S, then gives up:
    # the margin is for a loaded machine's interpreter start and migrations, not a hang.
    assert elapsed < STARTUP_DEADLINE_S + 15
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        f"opsctl daemon web: error: cannot reach Redis at {url}: Connection refused "
        "(check QUEUE_REDIS_URL and that Redis runs)"
    ]
    assert "Traceback" not in result.stderr


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_redis_that_never_answers_does_not_hang(silent_server: int, tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{silent_server}/0"
    started = time.monotonic()
    result = run_opsctl(
        "daemon",
        "web",
        env={"QUEUE_REDIS_URL": url, "PORT": str(free_port()), "OPSCTL_DATA_DIR": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 15
    assert f"Redis at redis://:***@127.0.0.1:{silent_server}/0" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_opsctl(
            "daemon", "web", env={"PORT": str(port), "OPSCTL_DATA_DIR": str(tmp_path)}
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: " in result.stderr
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_options_override_the_environment(
    daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    port = free_port()
    daemon = daemons(
        "daemon",
        "web",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={"PORT": "1", "OPSCTL_DATA_DIR": str(tmp_path)},
    )
    daemon.wait_http(f"http://127.0.0.1:{port}/api/health/live")
    assert daemon.stop() == 0


def test_bad_cli_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run_opsctl("daemon", "web", "--port", "99999", cwd=tmp_path)
    assert result.returncode == 2
    assert "--port" in result.stderr and "65535" in result.stderr


def test_daemon_keeps_pid_of_the_opsctl_command(
    daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """``opsctl daemon web`` execs the daemon: PM2 and platforms signal the pid they started."""
    daemon, _ = start_web(daemons, tmp_path)
    cmdline = Path(f"/proc/{daemon.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert b"daemons.web" in cmdline
    assert subprocess.run(["kill", "-0", str(daemon.proc.pid)], check=False).returncode == 0
