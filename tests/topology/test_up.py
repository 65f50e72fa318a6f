"""`opsctl up` as operators run it: real daemons, real signals, pids checked afterwards."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from opsctl.queue import NewJob, QueueBackend, open_queue
from opsctl.settings import load_settings
from opsctl.topology import TOPOLOGY, instance_names, plan
from tests._support import free_port, run_opsctl
from tests.topology.conftest import Up, alive, processes_with_env

pytestmark = pytest.mark.slow
T = TypeVar("T")
UpFactory = Callable[..., Up]
KILL_TIMEOUT_S = max(p.kill_timeout_s for p in TOPOLOGY)


def with_queue(env: Mapping[str, str], body: Callable[[QueueBackend], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_queue(load_settings(dict(env))) as queue:
            return await body(queue)

    return asyncio.run(run())


def wait_active(running: Up, count: int, timeout: float = 20) -> None:
    """Wait until ``count`` jobs are reserved by workers."""

    async def active(queue: QueueBackend) -> int:
        return (await queue.stats()).active

    deadline = time.monotonic() + timeout
    while with_queue(running.env, active) < count:
        assert time.monotonic() < deadline, running.output
        time.sleep(0.05)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_up_supervises_the_whole_topology_and_sigterm_leaves_no_orphan(
    up: UpFactory, short_dir: Path
) -> None:
    env_file = short_dir / "local.env"
    env_file.write_text("# read by opsctl up and passed to every child\nTEST_MARKER=from-file\n")
    running = up("--env-file", str(env_file))
    expected = instance_names(plan(TOPOLOGY))
    procs = running.wait_running(len(expected))
    assert sorted(procs) == sorted(expected)

    port = running.env["PORT"]
    running.wait_output("listening on")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/live", timeout=5) as reply:
        assert reply.status == 200

    data = running.status()
    assert data["supervisor"]["pid"] == running.proc.pid
    assert [p["name"] for p in data["processes"]] == expected
    for proc in data["processes"]:
        assert proc["state"] in ("starting", "running")
        assert alive(proc["pid"]) and proc["memory_bytes"] > 0 and proc["restarts"] == 0
    web = next(p for p in data["processes"] if p["type"] == "web")
    assert web["port"] == int(port)
    table = running.opsctl("status").stdout
    assert table.splitlines()[0].split() == [
        "PROCESS",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "CPU",
        "MEMORY",
        "NOTE",
    ]
    children = processes_with_env("OPSCTL_DATA_DIR", running.data_dir)
    assert {p["pid"] for p in data["processes"]} <= set(children)
    assert all(
        processes_with_env("TEST_MARKER", "from-file").count(p["pid"]) for p in data["processes"]
    )

    # Restart one instance: a new pid, the old one gone, the others untouched.
    old = {p["name"]: p["pid"] for p in data["processes"]}
    restarted = running.opsctl("restart", "worker.2")
    assert restarted.returncode == 0, restarted.stderr
    assert re.fullmatch(r"worker\.2: (starting|running) \(pid \d+\)", restarted.stdout.strip())
    # Stop one type.
    stopped = running.opsctl("stop", "scheduler")
    assert stopped.stdout.strip() == "scheduler.1: stopped", stopped.stderr
    after = {p["name"]: p for p in running.status()["processes"]}
    assert after["worker.2"]["pid"] != old["worker.2"] and not alive(old["worker.2"])
    assert after["worker.2"]["restarts"] == 1
    assert after["scheduler.1"]["state"] == "stopped" and not alive(old["scheduler.1"])
    assert after["worker.1"]["pid"] == old["worker.1"]

    unknown = running.opsctl("restart", "wrker")
    assert unknown.returncode == 2
    assert one_line(unknown.stderr).startswith("opsctl: error: no process 'wrker' under this")

    # A second supervisor on the same data directory is refused.
    second = run_opsctl("up", env={**running.env, "PORT": str(free_port())}, cwd=short_dir)
    assert second.returncode == 1
    assert "another opsctl up (pid " in one_line(second.stderr)

    pids = [p["pid"] for p in after.values() if p["pid"]] + [old["scheduler.1"]]
    started = time.monotonic()
    running.signal(signal.SIGTERM)
    assert running.wait(KILL_TIMEOUT_S + 5) == 0, running.output
    assert time.monotonic() - started < KILL_TIMEOUT_S
    assert not [pid for pid in pids if alive(pid)]
    assert processes_with_env("OPSCTL_DATA_DIR", running.data_dir) == []
    assert not (Path(running.data_dir) / "supervisor.sock").exists()

    out = running.output
    assert "database sqlite, queue sqlite" in out  # nothing configured: embedded SQLite
    assert (Path(running.data_dir) / "queue.db").exists()
    assert re.search(r"^\d\d:\d\d:\d\d worker\.2\s+\| \{", out, re.M)
    assert re.search(r"^\d\d:\d\d:\d\d system\s+\| SIGTERM received: stopping every", out, re.M)
    assert "\033[" not in out  # no colour when stdout is not a terminal


def test_jobs_in_flight_at_ctrl_c_are_drained(up: UpFactory) -> None:
    running = up("--only", "worker", "--scale", "worker=2")
    running.wait_running(2)

    async def enqueue(queue: QueueBackend) -> list[str]:
        return await queue.enqueue_many([NewJob("sleep", {"seconds": 1.5}) for _ in range(6)])

    ids = with_queue(running.env, enqueue)
    wait_active(running, len(ids))

    running.signal(signal.SIGINT)
    assert running.wait(KILL_TIMEOUT_S) == 0, running.output

    async def outcome(queue: QueueBackend) -> tuple[list[Any], Any]:
        return [await queue.get(i) for i in ids], await queue.stats()

    jobs, stats = with_queue(running.env, outcome)
    assert [job.status for job in jobs] == ["done"] * len(ids), running.output
    assert all(job.result == {"slept": 1.5} for job in jobs)
    assert (stats.waiting, stats.active, stats.delayed, stats.failed) == (0, 0, 0, 0)


def test_a_second_ctrl_c_kills_at_once_and_exits_130(up: UpFactory) -> None:
    running = up("--only", "worker", "--scale", "worker=1")
    [worker] = running.wait_running(1).values()

    async def enqueue(queue: QueueBackend) -> str:
        return await queue.enqueue(NewJob("sleep", {"seconds": 60}))

    with_queue(running.env, enqueue)
    wait_active(running, 1)  # running: a drain would wait its whole deadline
    running.signal(signal.SIGINT)
    running.wait_output("SIGINT received")
    started = time.monotonic()
    running.signal(signal.SIGINT)
    assert running.wait(10) == 130, running.output
    assert time.monotonic() - started < 5
    assert not alive(worker["pid"])
    assert "second SIGINT: killing every process now" in running.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "web,wrker"], "unknown process type 'wrker' in --only (known: web, worker"),
        (["--scale", "wrker=2"], "unknown process type 'wrker' in --scale"),
        (["--scale", "worker=-1"], "--scale worker cannot be negative, got -1"),
        (["--env-file", "missing.env"], "env file"),
        (["--env-file", "."], "is a directory, not a file"),
        (["--env-file", "latin1.env"], "is not UTF-8 text"),
        (["--only", "timers"], "longer than the 107 bytes a Unix socket allows"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, short_dir: Path) -> None:
    (short_dir / "latin1.env").write_bytes(b"NAME=caf\xe9\n")
    data_dir = short_dir / ("deep" * 30 if "timers" in args else "data")
    result = run_opsctl("up", *args, env={"OPSCTL_DATA_DIR": str(data_dir)}, cwd=short_dir)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("opsctl: error: ") and message in line
    assert result.stdout == ""


def test_a_port_in_use_is_one_line(short_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"OPSCTL_DATA_DIR": str(short_dir), "PORT": str(port)}
        result = run_opsctl("up", "--only", "web", env=env, cwd=short_dir)
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"opsctl: error: port {port} on 127.0.0.1 is already in use, so the web process cannot"
        " listen (set PORT to a free port or stop the process using it)"
    )


WORKER_SAYS = (
    "opsctl daemon worker: error: job module 'no_such_module' cannot be found (check the name"
    " and PYTHONPATH (--import / OPSCTL_JOB_MODULES))"
)


def test_a_daemon_that_exits_2_is_failed_at_once_and_up_exits_2(up: UpFactory) -> None:
    """The worker refuses a job module that does not exist (exit 2): restarting it with the
    same configuration cannot help, so it is not restarted, and up says why."""
    running = up(
        "--only", "worker", "--scale", "worker=2", env={"OPSCTL_JOB_MODULES": "no_such_module"}
    )
    assert running.wait(30) == 2, running.output
    out = running.output
    assert "restarting in" not in out
    assert out.count(" started (pid ") == 2  # each started once
    reason = f"exited with code 2, a configuration error: {WORKER_SAYS}"
    assert f"worker.1 failed: {reason}; not restarting it" in out
    assert "fix the configuration, then run `opsctl up` again" in out
    assert "`opsctl restart worker.1`" not in out
    last = out.strip().splitlines()[-1]
    assert last == (
        "opsctl: error: every process failed on a configuration error, so opsctl up stopped:"
        f" worker.1 ({reason}); worker.2 ({reason}) (fix the configuration, then run opsctl up"
        " again)"
    )
    assert processes_with_env("OPSCTL_DATA_DIR", running.data_dir) == []


def test_a_child_that_exits_2_beside_healthy_ones_is_left_failed(up: UpFactory) -> None:
    running = up("--only", "worker,timers", env={"OPSCTL_JOB_MODULES": "no_such_module"})
    running.wait_output("worker.1 failed: exited with code 2, a configuration error")
    deadline = time.monotonic() + 20
    while True:
        # `opsctl status` exits 1 here (no worker is alive); its JSON still lists the processes.
        shown = running.opsctl("status", "--json")
        procs = {p["name"]: p for p in json.loads(shown.stdout)["processes"]}
        if procs["timers.1"]["pid"]:
            break
        assert time.monotonic() < deadline, procs
        time.sleep(0.1)
    worker = procs["worker.1"]
    assert (worker["state"], worker["pid"], worker["restarts"], worker["exit_code"]) == (
        "failed",
        None,
        0,
        2,
    )
    assert worker["reason"] == f"exited with code 2, a configuration error: {WORKER_SAYS}"
    assert running.proc.poll() is None  # the timers keep running under up
    running.signal(signal.SIGTERM)
    assert running.wait(KILL_TIMEOUT_S + 5) == 0, running.output
    assert "restarting in" not in running.output


def _nothing_started(data_dir: Path) -> None:
    assert processes_with_env("OPSCTL_DATA_DIR", str(data_dir)) == []
    assert not (data_dir / "supervisor.sock").exists()
    assert not (data_dir / "queue.db").exists()  # no embedded queue, so no heartbeat


def test_up_with_an_unreachable_redis_gives_up_within_10_s_with_one_line(
    short_dir: Path,
) -> None:
    data_dir = short_dir / "data"
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = {"OPSCTL_DATA_DIR": str(data_dir), "QUEUE_REDIS_URL": url, "PORT": str(free_port())}
    started = time.monotonic()
    result = run_opsctl("up", env=env, cwd=short_dir, timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"opsctl: error: cannot reach Redis at {url}: Connection refused (check QUEUE_REDIS_URL"
        " and that Redis runs)"
    ]
    assert result.stdout == ""
    _nothing_started(data_dir)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung server)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_up_with_servers_that_never_answer_gives_up_within_10_s(
    short_dir: Path, silent_port: int
) -> None:
    data_dir = short_dir / "data"
    env = {
        "OPSCTL_DATA_DIR": str(data_dir),
        "QUEUE_REDIS_URL": f"redis://:hunter2@127.0.0.1:{silent_port}/0",
        "DATABASE_URL": f"postgresql://postgres:hunter2@127.0.0.1:{silent_port}/opsctl",
        "PORT": str(free_port()),
    }
    started = time.monotonic()
    result = run_opsctl("up", env=env, cwd=short_dir, timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("opsctl: error: 2 configuration problems: (1) Redis at redis://:***@")
    assert f"(2) PostgreSQL at 127.0.0.1:{silent_port}/opsctl did not answer" in line
    assert "hunter2" not in result.stderr
    _nothing_started(data_dir)


@pytest.mark.parametrize(
    ("database_url", "message"),
    [
        ("postgresql://postgres@127.0.0.1:{port}/opsctl", "cannot reach PostgreSQL at 127.0.0.1:"),
        (
            "postgresql://postgres@127.0.0.1:5432/opsctl_no_such_db",
            "PostgreSQL database 'opsctl_no_such_db' does not exist",
        ),
        ("sqlite:///{dir}/a-file/opsctl.db", "cannot create the SQLite database in"),
    ],
)
def test_up_with_a_database_that_refuses_is_one_line_and_exit_2(
    short_dir: Path, database_url: str, message: str
) -> None:
    (short_dir / "a-file").write_text("not a directory")
    data_dir = short_dir / "data"
    url = database_url.format(port=free_port(), dir=short_dir)
    env = {"OPSCTL_DATA_DIR": str(data_dir), "DATABASE_URL": url, "PORT": str(free_port())}
    result = run_opsctl("up", env=env, cwd=short_dir, timeout=30)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"opsctl: error: {message}") and "DATABASE_URL" in line, line
    assert result.stdout == ""
    _nothing_started(data_dir)


def test_up_in_production_checks_the_configuration_before_starting(short_dir: Path) -> None:
    data_dir = short_dir / "data"
    env = {
        "OPSCTL_ENV": "production",
        "OPSCTL_API_TOKEN": "t" * 32,
        "OPSCTL_DATA_DIR": str(data_dir),
        "PORT": str(free_port()),
    }
    result = run_opsctl("up", env=env, cwd=short_dir, timeout=30)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("opsctl: error: 3 configuration problems: (1) QUEUE_REDIS_URL"), line
    assert "(2) DATABASE_URL must name PostgreSQL" in line
    assert "(3) OPSCTL_MASTER_KEY_REF must be set" in line
    _nothing_started(data_dir)
    assert not data_dir.exists()


def test_up_help_documents_the_exit_status() -> None:
    result = run_opsctl("up", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "is not restarted: it is marked failed" in text
    assert "2 for bad options or configuration: the check before the start failed" in text


def test_status_restart_and_stop_without_a_supervisor(short_dir: Path) -> None:
    env = {"OPSCTL_DATA_DIR": str(short_dir)}
    # Without a supervisor, status reads the fleet from the heartbeats: no worker, exit 1.
    status = run_opsctl("status", env=env, cwd=short_dir)
    assert status.returncode == 1, status.stdout + status.stderr
    assert status.stdout.startswith("no `opsctl up` supervisor runs for data directory")
    assert status.stdout.rstrip().endswith("fleet: fail") and status.stderr == ""
    as_json = run_opsctl("status", "--json", env=env, cwd=short_dir)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["supervisor"] is None
    for command in ("restart", "stop"):
        result = run_opsctl(command, "worker", env=env, cwd=short_dir)
        assert result.returncode == 1
        assert "no supervisor is running" in one_line(result.stderr)
