"""The keyboard, on frozen data: panes, vim keys, the filter, help, follow, quit."""

from __future__ import annotations

import dataclasses
from typing import Any

from textual.pilot import Pilot

from opsctl.tui.app import DashboardApp
from opsctl.tui.messages import EventsReceived, ProcessesUpdated
from opsctl.tui.screens.help import HelpScreen
from opsctl.tui.widgets.connector_table import ConnectorTable
from opsctl.tui.widgets.dead_letter_table import DeadLetterTable
from opsctl.tui.widgets.filter_bar import FilterBar
from opsctl.tui.widgets.heartbeat_table import HeartbeatTable
from opsctl.tui.widgets.log_pane import LOG_LINES, LogPane
from opsctl.tui.widgets.process_table import ProcessTable
from opsctl.tui.widgets.status_bar import StatusBar
from tests.tui import _frozen as F


async def fed(pilot: Pilot[Any], **sizes: int) -> DashboardApp:
    app = pilot.app
    assert isinstance(app, DashboardApp)
    for message in F.messages(**sizes):
        app.dashboard.post_message(message)
    await pilot.pause()
    return app


def frozen_app(**options: Any) -> DashboardApp:
    return DashboardApp(None, hostname=F.HOST, clock=lambda: F.NOW, **options)


async def test_number_keys_h_and_l_switch_panes_and_focus_their_table() -> None:
    async with frozen_app().run_test(size=(80, 24)) as pilot:
        app = await fed(pilot)
        screen = app.dashboard
        assert app.focused is screen.query_one(ProcessTable)
        await pilot.press("2")
        assert screen.active_pane == "queue"
        assert app.focused is screen.query_one(DeadLetterTable)
        await pilot.press("l", "l")
        assert screen.active_pane == "connectors"
        assert app.focused is screen.query_one(ConnectorTable)
        await pilot.press("h", "h", "h")
        assert screen.active_pane == "processes"
        await pilot.press("h")
        assert screen.active_pane == "logs"


async def test_j_k_and_arrows_move_the_selection_which_survives_a_refresh() -> None:
    async with frozen_app().run_test(size=(80, 24)) as pilot:
        app = await fed(pilot)
        table = app.dashboard.query_one(ProcessTable)
        assert table.selected_key == "web.1"
        await pilot.press("j", "j", "down")
        assert table.selected_key == "scheduler.1"
        await pilot.press("k", "up")
        assert table.selected_key == "worker.1"
        await pilot.press("G")
        assert table.selected_key == "encryption-rotation.1"
        await pilot.press("g")
        assert table.selected_key == "web.1"
        await pilot.press("j")
        # A refresh that reorders the rows keeps the cursor on the same process.
        data = F.processes()
        reordered = dataclasses.replace(data, processes=tuple(reversed(data.processes)))
        app.dashboard.post_message(ProcessesUpdated(reordered))
        await pilot.pause()
        assert table.shown_keys[0] == "encryption-rotation.1"
        assert table.selected_key == "worker.1"


async def test_slash_filters_every_table_until_escape() -> None:
    async with frozen_app().run_test(size=(80, 24)) as pilot:
        app = await fed(pilot)
        screen = app.dashboard
        table = screen.query_one(ProcessTable)
        await pilot.press("slash")
        assert isinstance(app.focused, FilterBar)
        await pilot.press(*"work", "q")  # q is typed into the filter, it does not quit
        assert app.is_running
        await pilot.press("backspace")
        assert table.shown_keys == ["worker.1", "worker.2"]
        assert "/work" in screen.query_one(StatusBar).plain
        await pilot.press("enter")
        assert app.focused is table
        await pilot.press("4")
        assert screen.query_one(ConnectorTable).shown_keys == []  # no connector says "work"
        await pilot.press("slash", "escape")
        assert screen.query_one(ConnectorTable).shown_keys[:2] == ["airtable", "github"]
        await pilot.press("1")
        assert len(table.shown_keys) == 6
        assert "/work" not in screen.query_one(StatusBar).plain


async def test_question_mark_opens_help_and_q_quits() -> None:
    async with frozen_app().run_test(size=(80, 24)) as pilot:
        app = await fed(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is app.dashboard
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_the_log_is_bounded_and_f_toggles_following() -> None:
    async with frozen_app().run_test(size=(80, 24)) as pilot:
        app = await fed(pilot)
        await pilot.press("7")
        log = app.dashboard.query_one(LogPane)
        for _ in range(40):
            app.dashboard.post_message(EventsReceived(F.events(100)))
        await pilot.pause()
        assert len(log.buffer) == LOG_LINES
        assert log.line_count <= LOG_LINES
        assert log.following and log.scroll_y == log.max_scroll_y
        await pilot.press("f")
        assert not log.following
        await pilot.press("k")
        app.dashboard.post_message(EventsReceived(F.events(5)))
        await pilot.pause()
        assert log.scroll_y < log.max_scroll_y  # paused: new lines do not move the view
        await pilot.press("f")
        assert log.following and log.scroll_y == log.max_scroll_y


async def test_heartbeats_of_restarted_processes_do_not_show_as_foreign() -> None:
    async with frozen_app().run_test(size=(80, 24)) as pilot:
        app = await fed(pilot)
        beats = app.dashboard.query_one(HeartbeatTable)
        assert beats.shown_keys == ["host-b:7000", "host-b:7001"]
        data = F.processes()
        restarted = tuple(
            dataclasses.replace(p, pid=9999) if p.name == "worker.1" else p for p in data.processes
        )
        app.dashboard.post_message(ProcessesUpdated(dataclasses.replace(data, processes=restarted)))
        await pilot.pause()
        # worker.1's old pid 4101 still beats (its key has not lapsed): it was supervised here.
        assert f"{F.HOST}:4101" not in beats.shown_keys
