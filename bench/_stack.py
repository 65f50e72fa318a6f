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
    procs = [
        subprocess.Popen(
            [OPSCTL, "daemon", t],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for t in types
    ]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"{env['APP_URL']}/api/production/queue/heartbeat"
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("bench: the local stack did not become healthy within 30 s")
            time.sleep(0.1)
        yield env
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(25)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


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
