"""Start a local stack (web, worker, timers) for a benchmark, and stop it afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OPSCTL = str(Path(sys.executable).with_name("opsctl"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSCTL_", "QUEUE_REDIS"))}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def wait_until_answers(url: str, what: str, *, within: float = 30) -> None:
    """Poll ``url`` until it answers 2xx; exit the benchmark with one line after ``within``."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if 200 <= resp.status < 300:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not answer at {url} within {within:.0f} s")
        time.sleep(0.05)


@contextmanager
def processes(
    commands: list[list[str]], env: dict[str, str] | None, cwd: Path | None, *, grace: float = 30
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes, each in its own group; SIGTERM at the end, SIGKILL after ``grace``."""
    procs = [
        subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for cmd in commands
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


@contextmanager
def serving(command: list[str], probe_url: str, what: str) -> Iterator[None]:
    """A child server (a local vendor, say), up once ``probe_url`` answers."""
    with processes([command], None, None, grace=10):
        wait_until_answers(probe_url, what, within=15)
        yield


@contextmanager
def stack(
    redis_url: str, *, types: tuple[str, ...] = ("web", "worker", "timers")
) -> Iterator[dict[str, str]]:
    """A running stack on ``redis_url`` under a fresh key prefix; yields its environment."""
    tmp = Path(tempfile.mkdtemp(prefix="opsctl-bench-"))
    port = free_port()
    env = base_env(
        {
            "QUEUE_REDIS_URL": redis_url,
            "OPSCTL_REDIS_PREFIX": f"bench-{os.getpid()}-{int(time.time())}",
            "PORT": str(port),
            "APP_URL": f"http://127.0.0.1:{port}",
            "OPSCTL_DATA_DIR": str(tmp),
            "OPSCTL_LOG_LEVEL": "WARNING",
        }
    )
    commands = [[OPSCTL, "daemon", t] for t in types]
    with processes(commands, env, tmp, grace=25):
        url = f"{env['APP_URL']}/api/production/queue/heartbeat"
        wait_until_answers(url, "the local stack's heartbeat")
        yield env


@contextmanager
def redis_server() -> Iterator[str]:
    """A private, throw-away ``redis-server`` on a free port (no persistence); yields its URL.

    A benchmark that flushes databases or fills memory does it here, never on the machine's Redis.
    """
    tmp = Path(tempfile.mkdtemp(prefix="opsctl-bench-redis-"))
    port = free_port()
    args = f"--port {port} --bind 127.0.0.1 --appendonly no --dir {tmp} --databases 16".split()
    proc = subprocess.Popen(
        ["redis-server", *args, "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
