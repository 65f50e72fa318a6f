"""The dashboard against a running platform, driven from the keyboard with Textual's Pilot."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from textual.pilot import Pilot

from opsctl.queue import NewJob, open_queue
from opsctl.tui.app import DashboardApp
from opsctl.tui.screens.confirm import ConfirmScreen
from opsctl.tui.screens.outcome import OutcomeScreen
from opsctl.tui.sources import Sources
from opsctl.tui.widgets.connector_table import ConnectorTable
from opsctl.tui.widgets.dead_letter_table import DeadLetterTable
from opsctl.tui.widgets.gate_pane import GatePane
from opsctl.tui.widgets.health_pane import HealthPane
from opsctl.tui.widgets.log_pane import LogPane
from opsctl.tui.widgets.process_table import ProcessTable
from opsctl.tui.widgets.queue_summary import QueueSummary
from opsctl.tui.widgets.rate_limit_table import RateLimitTable
from opsctl.tui.widgets.status_bar import StatusBar
from tests.tui.conftest import REFRESH_S, Stack, idle_actions, until

pytestmark = pytest.mark.slow
SIZE = (80, 24)


@asynccontextmanager
async def running(stack: Stack, *, read_only: bool = False) -> AsyncIterator[Pilot[DashboardApp]]:
    async with Sources(stack.settings, url=stack.url) as sources:
        app = DashboardApp(sources, refresh_s=REFRESH_S, read_only=read_only)
        async with app.run_test(size=SIZE) as pilot:
            yield pilot


def process_cell(app: DashboardApp, name: str, column: int) -> str:
    return app.dashboard.query_one(ProcessTable).cell_text(name, column)


async def select(
    pilot: Pilot[DashboardApp], table: ProcessTable | ConnectorTable | DeadLetterTable, key: str
) -> None:
    """Move the cursor to ``key`` with the j and k keys, as a person would."""
    await until(pilot, lambda: key in table.shown_keys, f"row {key}")
    while table.selected_key != key:
        below = table.shown_keys.index(key) > table.shown_keys.index(table.selected_key or key)
        await pilot.press("j" if below else "k")


async def test_panes_show_the_processes_and_the_queue(stack: Stack) -> None:
    async with running(stack) as pilot:
        app = pilot.app
        table = app.dashboard.query_one(ProcessTable)
        names = [
            "web.1",
            "worker.1",
            "worker.2",
            "scheduler.1",
            "timers.1",
            "encryption-rotation.1",
        ]
        await until(pilot, lambda: table.shown_keys == names, "the six supervised processes")
        await until(
            pilot,
            lambda: all(process_cell(app, n, 1) == "running" for n in names),
            "every process running",
        )
        status = stack.up.status()
        pids = {p["name"]: str(p["pid"]) for p in status["processes"]}
        assert all(process_cell(app, n, 2) == pids[n] for n in names)
        assert process_cell(app, "worker.1", 7) == "0"  # in flight, from its heartbeat
        bar = app.dashboard.query_one(StatusBar)
        await until(pilot, lambda: "supervisor 6/6 up" in bar.plain, "6/6 in the status line")
        assert "redis" in bar.plain and "web" in bar.plain

        await pilot.press("2")
        assert app.focused is app.dashboard.query_one(DeadLetterTable)
        summary = app.dashboard.query_one(QueueSummary)
        await until(pilot, lambda: len(summary.samples) >= 2, "throughput samples")


async def test_every_pane_reads_the_platform(stack: Stack) -> None:
    async with running(stack) as pilot:
        app = pilot.app
        screen = app.dashboard
        await pilot.press("3")
        gate = screen.query_one(GatePane)
        await until(pilot, lambda: gate.data is not None, "a round of the gate")
        assert gate.data is not None
        assert [c.name for c in gate.data.checks] == [
            "queue",
            "workers",
            "draining",
            "promotion",
            "dead_letters",
            "heartbeat",
            "readiness",
        ]
        await pilot.press("4")
        connectors = screen.query_one(ConnectorTable)
        await until(pilot, lambda: "github" in connectors.shown_keys, "the shipped connectors")
        await pilot.press("5")
        limits = screen.query_one(RateLimitTable)
        await until(pilot, lambda: "github/primary_hourly" in limits.shown_keys, "github's limits")
        assert limits.cell_text("github/primary_hourly", 5) == "5,000 requests / 1 h"
        await pilot.press("6")
        health = screen.query_one(HealthPane)
        await until(pilot, lambda: health.data is not None and health.data.readiness, "readiness")
        assert health.data is not None
        assert {c.name for c in health.data.readiness} >= {"registry", "database", "queue"}
        assert "GENERIC_EXECUTOR_ENABLED" in {f.name for f in health.data.flags}

        await pilot.press("7")
        log = screen.query_one(LogPane)
        async with open_queue(stack.settings) as queue:
            job_id = await queue.enqueue(NewJob("nosuch-kind", {"n": 0}, max_attempts=1))
        await until(
            pilot,
            lambda: any(job_id in line.plain for line in log.buffer),
            "the worker's log line about the job, in the log pane",
        )
        # The web daemon logs the dashboard's own requests; the pane leaves those lines out.
        assert stack_marker(app) in stack.up.output
        assert not any(stack_marker(app) in line.plain for line in log.buffer)


def stack_marker(app: DashboardApp) -> str:
    sources = app.sources
    assert sources is not None
    return sources.request_marker


async def test_a_worker_killed_from_another_shell_restarts_in_the_pane(stack: Stack) -> None:
    async with running(stack) as pilot:
        app = pilot.app
        await until(pilot, lambda: process_cell(app, "worker.2", 1) == "running", "worker.2")
        old_pid = int(process_cell(app, "worker.2", 2))
        restarts = int(process_cell(app, "worker.2", 4))
        os.kill(old_pid, signal.SIGKILL)
        await until(
            pilot,
            lambda: (
                process_cell(app, "worker.2", 2) not in ("-", str(old_pid))
                and process_cell(app, "worker.2", 4) == str(restarts + 1)
            ),
            "worker.2 restarted with a new pid",
        )


async def test_a_dead_letter_is_retried_only_after_yes(stack: Stack) -> None:
    async with open_queue(stack.settings) as queue:
        job_id = await queue.enqueue(NewJob("nosuch-kind", {"n": 1}, max_attempts=1))
        async with running(stack) as pilot:
            app = pilot.app
            await pilot.press("2")
            table = app.dashboard.query_one(DeadLetterTable)
            await select(pilot, table, job_id)
            first = await queue.get(job_id)
            assert first is not None and first.status == "dead"

            await pilot.press("r")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            assert not isinstance(app.screen, ConfirmScreen)
            await pilot.pause(3 * REFRESH_S)
            unchanged = await queue.get(job_id)
            assert unchanged is not None and unchanged.finished_at == first.finished_at

            await pilot.press("r")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            # The worker runs it again (and, its kind unknown, dead-letters it again).
            for _ in range(100):
                again = await queue.get(job_id)
                if again is not None and again.finished_at != first.finished_at:
                    break
                await pilot.pause(0.1)
            else:
                raise AssertionError("the dead job was not run again")


async def test_promote_and_demote_a_connector_from_the_keyboard(stack: Stack) -> None:
    async with running(stack) as pilot:
        app = pilot.app
        await pilot.press("4")
        table = app.dashboard.query_one(ConnectorTable)
        await select(pilot, table, "airtable")
        assert table.cell_text("airtable", 1) == "beta"

        # beta → stable is refused: no API client; the dialog lists every reason.
        await pilot.press("p")
        assert isinstance(app.screen, ConfirmScreen)
        assert "beta → stable" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, OutcomeScreen), "the refusal")
        outcome = app.screen.outcome  # type: ignore[attr-defined]
        assert outcome.outcome == "refused"
        failed = {c.name: c.reason for c in outcome.conditions if c.status == "fail"}
        assert "no API client is registered" in failed["client"]
        await pilot.press("escape")
        assert table.cell_text("airtable", 1) == "beta"

        # Down a stage and back up: both change the registry, after a yes.
        await pilot.press("d")
        await pilot.press("y")
        await until(
            pilot, lambda: table.cell_text("airtable", 1) == "experimental", "demoted airtable"
        )
        assert table.cell_text("airtable", 2) == "registry"
        await pilot.press("p")
        assert "experimental → beta" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        await until(pilot, lambda: table.cell_text("airtable", 1) == "beta", "promoted airtable")
        await until(pilot, lambda: idle_actions(app), "the promotion finished")


async def test_read_only_mode_offers_no_action(stack: Stack) -> None:
    async with open_queue(stack.settings) as queue:
        job_id = await queue.enqueue(NewJob("nosuch-kind", {"n": 2}, max_attempts=1))
    async with running(stack, read_only=True) as pilot:
        app = pilot.app
        screen = app.dashboard
        await until(pilot, lambda: "worker.1" in screen.query_one(ProcessTable).shown_keys, "rows")
        assert "read-only" in screen.query_one(StatusBar).plain
        shown = {b.binding.key for b in screen.active_bindings.values()}
        assert not {"r", "s"} & shown
        for pane, table, row, keys in (
            ("1", screen.query_one(ProcessTable), "worker.1", ("r", "s")),
            ("2", screen.query_one(DeadLetterTable), job_id, ("r",)),
            ("4", screen.query_one(ConnectorTable), "airtable", ("p", "d")),
        ):
            await pilot.press(pane)
            await select(pilot, table, row)
            shown = {b.binding.key for b in screen.active_bindings.values()}
            for key in keys:
                assert key not in shown
                await pilot.press(key)
                await pilot.pause()
                assert app.screen is screen, f"{key} opened {app.screen} in read-only mode"


async def test_stopping_the_workers_turns_the_gate_red(stack: Stack) -> None:
    async with running(stack) as pilot:
        app = pilot.app
        gate = app.dashboard.query_one(GatePane)
        await until(pilot, lambda: gate.data is not None and gate.data.status != "fail", "a pass")
        table = app.dashboard.query_one(ProcessTable)
        try:
            for name in ("worker.1", "worker.2"):
                await select(pilot, table, name)
                await pilot.press("s")
                assert isinstance(app.screen, ConfirmScreen)
                await pilot.press("y")
                await until(
                    pilot, lambda n=name: process_cell(app, n, 1) == "stopped", f"{name} stopped"
                )
            await pilot.press("3")
            await until(
                pilot,
                lambda: (
                    gate.data is not None
                    and gate.data.status == "fail"
                    and any(c.name == "workers" and c.status == "fail" for c in gate.data.checks)
                ),
                "the gate failing on workers",
            )
            bar = app.dashboard.query_one(StatusBar)
            assert "gate fail" in bar.plain
        finally:
            await pilot.press("1")
            for name in ("worker.1", "worker.2"):
                await select(pilot, table, name)
                await pilot.press("r")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the dialog")
                await pilot.press("y")
            await until(
                pilot,
                lambda: all(process_cell(app, n, 1) != "stopped" for n in ("worker.1", "worker.2")),
                "the workers started again",
            )
        await pilot.press("3")
        await until(pilot, lambda: gate.data is not None and gate.data.status != "fail", "pass")
