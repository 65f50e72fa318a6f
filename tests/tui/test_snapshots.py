"""Pictures of every pane and dialog at 80x24, fed frozen data (no I/O), compared with the SVGs
under __snapshots__. After an intended change, look at the new pictures and accept them with
``pytest tests/tui/test_snapshots.py --snapshot-update``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from opsctl.tui.app import DashboardApp
from opsctl.tui.data import (
    ConnectorsData,
    GateData,
    HealthData,
    ProcessesData,
    QueueData,
    RateLimitsData,
)
from opsctl.tui.messages import (
    ConnectorsUpdated,
    EventStreamChanged,
    GateUpdated,
    HealthUpdated,
    ProcessesUpdated,
    QueueUpdated,
    RateLimitsUpdated,
)
from opsctl.tui.screens.confirm import ConfirmScreen
from opsctl.tui.screens.outcome import OutcomeScreen
from opsctl.tui.widgets.queue_summary import QueueSummary
from opsctl.verdict import CheckResult, QueueSnapshot
from tests.tui import _frozen as F

SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times of day in the pictures are UTC, whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def frozen_app(*, read_only: bool = False) -> DashboardApp:
    return DashboardApp(None, read_only=read_only, hostname=F.HOST, clock=lambda: F.NOW)


async def feed(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, DashboardApp)
    for message in F.messages():
        app.dashboard.post_message(message)
    await pilot.pause()
    app.dashboard.query_one(QueueSummary).set_history(F.THROUGHPUT)
    await pilot.pause()


def test_processes_pane(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), run_before=feed)


def test_queue_pane(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), press=["2"], run_before=feed)


def test_gate_pane(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), press=["3"], run_before=feed)


def test_connectors_pane(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), press=["4", "j"], run_before=feed)


def test_rate_limits_pane(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), press=["5"], run_before=feed)


def test_health_pane(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), press=["6"], run_before=feed)


def test_logs_pane(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), press=["7"], run_before=feed)


def test_help(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), press=["question_mark"], run_before=feed)


def test_filter(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(), press=["slash", "w", "o", "r", "k"], run_before=feed)


def test_read_only_has_no_action_keys(snap_compare: SnapCompare) -> None:
    assert snap_compare(frozen_app(read_only=True), run_before=feed)


def test_confirm_dialog(snap_compare: SnapCompare) -> None:
    async def ask(pilot: Pilot[Any]) -> None:
        await feed(pilot)
        pilot.app.push_screen(
            ConfirmScreen(
                "Stop worker.1 (pid 4101)?",
                "It stops taking work and drains in-flight jobs first; `opsctl restart` or r "
                "starts it again.",
            )
        )
        await pilot.pause()

    assert snap_compare(frozen_app(), run_before=ask)


def test_promotion_refused(snap_compare: SnapCompare) -> None:
    async def refuse(pilot: Pilot[Any]) -> None:
        await feed(pilot)
        await pilot.press("4")
        pilot.app.push_screen(OutcomeScreen(F.refusal()))
        await pilot.pause()

    assert snap_compare(frozen_app(), run_before=refuse)


def test_everything_down(snap_compare: SnapCompare) -> None:
    """No supervisor, no Redis, no web daemon: each pane says what is down."""

    async def down(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, DashboardApp)
        redis = "cannot reach Redis at redis://127.0.0.1:6379/0: connection refused"
        web = f"web daemon down: cannot connect to {F.URL}/api/health/features: connection refused"
        for message in (
            ProcessesUpdated(
                ProcessesData(
                    error="no supervisor is running for data directory /srv/opsctl/.opsctl "
                    "(start one with `opsctl up`)"
                )
            ),
            QueueUpdated(QueueData(QueueSnapshot("redis", error=redis, taken_at=F.NOW))),
            GateUpdated(
                GateData(
                    F.URL,
                    (
                        CheckResult("queue", "fail", redis),
                        CheckResult("heartbeat", "fail", web.removeprefix("web daemon down: ")),
                        CheckResult("readiness", "fail", web.removeprefix("web daemon down: ")),
                    ),
                    "fail",
                    taken_at=F.NOW,
                )
            ),
            HealthUpdated(HealthData(F.URL, error=web, web_down=True)),
            ConnectorsUpdated(ConnectorsData(error=web)),
            RateLimitsUpdated(RateLimitsData(error=web)),
            EventStreamChanged("no supervisor is running for data directory /srv/opsctl/.opsctl"),
        ):
            app.dashboard.post_message(message)
        await pilot.pause()

    assert snap_compare(frozen_app(), run_before=down)
