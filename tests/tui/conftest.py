"""A real platform for the dashboard to watch: `opsctl up` on Redis, shared by a module's tests."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from opsctl.settings import Settings, load_settings
from opsctl.tui.app import DashboardApp
from tests._support import REDIS_URL, clean_env, delete_redis_prefix, free_port
from tests.topology.conftest import Up

REPO = Path(__file__).resolve().parents[2]
REFRESH_S = 0.3


class Stack:
    """A running `opsctl up`: its environment, its settings, its URL."""

    def __init__(self, up: Up, env: dict[str, str]) -> None:
        self.up = up
        self.env = env
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.settings: Settings = load_settings(clean_env(env), cwd=up.cwd)


def _wait_http(url: str, up: Up, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{up.output}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """`opsctl up` (web, 2 workers, scheduler, timers, encryption-rotation) on Redis, with the
    shipped definitions and a private data dir short enough for the control socket."""
    home = Path(tempfile.mkdtemp(prefix="opsdash-", dir="/tmp"))
    prefix = f"opsctl-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    env = {
        "OPSCTL_DATA_DIR": str(home / "data"),
        "PORT": str(port),
        "APP_URL": f"http://127.0.0.1:{port}",
        "QUEUE_REDIS_URL": REDIS_URL,
        "OPSCTL_REDIS_PREFIX": prefix,
        "DEFINITIONS_PATH": str(REPO / "definitions"),
        "OPSCTL_LOG_FORMAT": "json",
    }
    up = Up([], env, home)
    try:
        up.wait_running(6)
        _wait_http(f"http://127.0.0.1:{port}/api/production/queue/heartbeat", up)
        yield Stack(up, env)
    finally:
        up.close()
        delete_redis_prefix(prefix)
        shutil.rmtree(home, ignore_errors=True)


async def until(
    pilot: Pilot[Any], check: Callable[[], object], what: str, within: float = 20
) -> None:
    """Let the app run until ``check()`` is true; fail saying ``what`` never happened."""
    deadline = time.monotonic() + within
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (LookupError, AssertionError) as exc:  # a row not there yet
            last = exc
        await pilot.pause(0.05)
    raise AssertionError(f"never saw: {what} (last error: {last!r})")


def idle_actions(app: DashboardApp) -> bool:
    """No confirmed action is still running (so none is cut short when the test ends)."""
    return not any(w.group == "actions" and w.is_running for w in app.workers)
