"""The dashboard when parts of the platform are down: it says what, and keeps refreshing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from opsctl.settings import load_settings
from opsctl.tui.app import DashboardApp
from opsctl.tui.sources import Sources
from opsctl.tui.widgets.connectors_pane import ConnectorsPane
from opsctl.tui.widgets.gate_pane import GatePane
from opsctl.tui.widgets.health_pane import HealthPane
from opsctl.tui.widgets.heartbeat_table import HeartbeatTable
from opsctl.tui.widgets.notice import Notice
from opsctl.tui.widgets.processes_pane import ProcessesPane
from opsctl.tui.widgets.queue_pane import QueuePane
from opsctl.tui.widgets.status_bar import StatusBar
from tests._support import REDIS_URL, Daemon, clean_env, free_port
from tests.tui.conftest import REFRESH_S, REPO, until

pytestmark = pytest.mark.slow


def notice(
    app: DashboardApp,
    pane: type[ProcessesPane | QueuePane | HealthPane | ConnectorsPane],
    which: str = "",
) -> str:
    container = app.dashboard.query_one(pane)
    found = container.query_one(which, Notice) if which else container.query_one(Notice)
    return found.text or ""


async def test_web_daemon_down_without_a_supervisor(
    daemons: Callable[..., Daemon], redis_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "QUEUE_REDIS_URL": REDIS_URL,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "PORT": str(port),
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        "DEFINITIONS_PATH": str(REPO / "definitions"),
        "OPSCTL_LOG_FORMAT": "json",
    }
    web = daemons("daemon", "web", env=env, log_name="web.log")
    daemons("daemon", "worker", env=env, log_name="worker.log")
    daemons("daemon", "timers", env=env, log_name="timers.log")
    await asyncio.to_thread(web.wait_http, f"{url}/api/health/live")
    settings = load_settings(clean_env(env), cwd=tmp_path)

    async with Sources(settings, url=url) as sources:
        app = DashboardApp(sources, refresh_s=REFRESH_S)
        async with app.run_test(size=(80, 24)) as pilot:
            bar = app.dashboard.query_one(StatusBar)
            await until(
                pilot,
                lambda: (
                    "no supervisor is running" in notice(app, ProcessesPane, "#supervisor-notice")
                ),
                "the processes pane saying no supervisor runs",
            )
            assert "opsctl up" in notice(app, ProcessesPane, "#supervisor-notice")
            # Daemons started by hand still show: their heartbeats, as not supervised here.
            beats = app.dashboard.query_one(HeartbeatTable)
            await until(
                pilot,
                lambda: (
                    {"web", "worker", "timers"}
                    <= {beats.cell_text(key, 1) for key in beats.shown_keys}
                ),
                "the three heartbeats",
            )
            gate = app.dashboard.query_one(GatePane)
            await until(pilot, lambda: gate.data and gate.data.status != "fail", "the gate passing")

            await asyncio.to_thread(web.stop)
            await pilot.press("6")
            await until(
                pilot,
                lambda: notice(app, HealthPane).startswith("web daemon down: cannot connect to"),
                "the health pane saying the web daemon is down",
            )
            assert "connection refused" in notice(app, HealthPane)
            await pilot.press("4")
            assert notice(app, ConnectorsPane).startswith("web daemon down")
            await until(pilot, lambda: "web down" in bar.plain, "web down in the status line")
            await until(
                pilot,
                lambda: (
                    gate.data
                    and any(c.name == "heartbeat" and c.status == "fail" for c in gate.data.checks)
                ),
                "the gate failing on the heartbeat endpoint",
            )
            rounds = app.dashboard.rounds
            await pilot.pause(3 * REFRESH_S)
            assert app.dashboard.rounds > rounds, "the dashboard stopped refreshing"


async def test_redis_down_is_said_on_the_queue_pane(tmp_path: Path) -> None:
    env = {
        "QUEUE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        "DEFINITIONS_PATH": str(REPO / "definitions"),
    }
    settings = load_settings(clean_env(env), cwd=tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    async with Sources(settings, url=url) as sources:
        app = DashboardApp(sources, refresh_s=REFRESH_S)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("2")
            await until(pilot, lambda: notice(app, QueuePane), "the queue pane's notice")
            assert notice(app, QueuePane).startswith("queue (redis) down:")
            bar = app.dashboard.query_one(StatusBar)
            await until(
                pilot,
                lambda: (
                    {"redis down", "no supervisor", "web down"}
                    <= {label for _, label in bar.sources.values()}
                ),
                "redis, the supervisor and the web daemon down in the status line",
            )
            await pilot.press("3")
            gate = app.dashboard.query_one(GatePane)
            await until(pilot, lambda: gate.data is not None, "a gate round")
            assert gate.data is not None and gate.data.status == "fail"
            queue_check = next(c for c in gate.data.checks if c.name == "queue")
            assert queue_check.status == "fail" and "127.0.0.1" in queue_check.reason
