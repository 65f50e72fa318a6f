"""Fixtures for the topology tests: `opsctl up` as a real process, and a hunt for orphans."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests._support import OPSCTL, clean_env, free_port, run_opsctl


def alive(pid: int) -> bool:
    """True while ``pid`` names a process that is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of live processes whose environment has ``name=value`` (our children, by marker)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(name) == value:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def kill_marked(name: str, value: str) -> None:
    for pid in processes_with_env(name, value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket path must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="opsup-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Up:
    """A running ``opsctl up``, its output in a file, its children found by their data dir."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.cwd = cwd
        self.env = dict(env)
        self.data_dir = env["OPSCTL_DATA_DIR"]
        self.log_path = cwd / f"up-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [OPSCTL, "up", *args],
            env=clean_env(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def opsctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_opsctl(*args, env=self.env, cwd=self.cwd, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """``opsctl status --json``; its exit code says the fleet's health (1 while no worker
        beats), which the supervisor's tests read from the JSON instead."""
        result = self.opsctl("status", "--json")
        assert result.returncode in (0, 1), result.stderr + self.output
        data: dict[str, Any] = json.loads(result.stdout)
        assert data["supervisor"] is not None, result.stdout + self.output
        return data

    def wait_running(self, count: int, timeout: float = 30) -> dict[str, dict[str, Any]]:
        """Wait until ``count`` processes have a pid; return them by name."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"opsctl up exited {self.proc.returncode}:\n{self.output}")
            result = self.opsctl("status", "--json")
            answer = json.loads(result.stdout) if result.returncode in (0, 1) else {}
            if answer.get("supervisor") is not None:
                procs = answer["processes"]
                last = result.stdout
                running = {p["name"]: p for p in procs if p["pid"] and p["state"] != "stopping"}
                if len(running) >= count:
                    return running
            time.sleep(0.2)
        raise AssertionError(f"not {count} processes within {timeout} s: {last}\n{self.output}")

    def wait_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared:\n{self.output}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        kill_marked("OPSCTL_DATA_DIR", self.data_dir)
        self._log.close()


@pytest.fixture
def up(short_dir: Path) -> Iterator[Callable[..., Up]]:
    """Start ``opsctl up ARGS`` with a private data dir and free PORT; stopped at teardown."""
    started: list[Up] = []

    def start(*args: str, env: Mapping[str, str] | None = None) -> Up:
        base = {
            "OPSCTL_DATA_DIR": str(short_dir / "data"),
            "PORT": str(free_port()),
            "OPSCTL_LOG_FORMAT": "json",
        }
        base.update(env or {})
        instance = Up(list(args), base, short_dir)
        started.append(instance)
        return instance

    yield start
    for instance in reversed(started):
        instance.close()
