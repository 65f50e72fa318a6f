"""The dashboard's one screen: a status line, seven panes in tabs, the filter, the key hints.

Every refresh starts one worker per source (a source still busy from the last round is left
to finish rather than started twice); each worker awaits its read and posts a typed message,
and the handlers below only hand that data to the panes. Actions are confirmed in a dialog and
run in workers too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, TabbedContent, TabPane

from opsctl.supervisor.events import LogLine, Notice
from opsctl.tui.data import ActionOutcome
from opsctl.tui.messages import (
    ActionFinished,
    ConnectorsUpdated,
    EventsReceived,
    EventStreamChanged,
    FilterChanged,
    GateUpdated,
    HealthUpdated,
    ProcessActionRequested,
    ProcessesUpdated,
    QueueUpdated,
    RateLimitsUpdated,
    RetryDeadRequested,
    StageChangeFinished,
    StageChangeRequested,
)
from opsctl.tui.screens.confirm import ConfirmScreen
from opsctl.tui.screens.outcome import OutcomeScreen
from opsctl.tui.sources import Sources, SupervisorDown
from opsctl.tui.widgets._table import DashTable
from opsctl.tui.widgets.connector_table import ConnectorTable
from opsctl.tui.widgets.connectors_pane import ConnectorsPane
from opsctl.tui.widgets.dead_letter_table import DeadLetterTable
from opsctl.tui.widgets.filter_bar import FilterBar
from opsctl.tui.widgets.gate_pane import GatePane
from opsctl.tui.widgets.health_pane import HealthPane
from opsctl.tui.widgets.log_pane import LogPane
from opsctl.tui.widgets.logs_pane import LogsPane
from opsctl.tui.widgets.process_table import ProcessTable
from opsctl.tui.widgets.processes_pane import ProcessesPane
from opsctl.tui.widgets.queue_pane import QueuePane
from opsctl.tui.widgets.queue_summary import QueueSummary
from opsctl.tui.widgets.rate_limit_table import RateLimitTable
from opsctl.tui.widgets.rate_limits_pane import RateLimitsPane
from opsctl.tui.widgets.status_bar import Health, StatusBar

T = TypeVar("T")

PANES: tuple[tuple[str, str], ...] = (
    ("processes", "1 Processes"),
    ("queue", "2 Queue"),
    ("gate", "3 Gate"),
    ("connectors", "4 Connectors"),
    ("limits", "5 Limits"),
    ("health", "6 Health"),
    ("logs", "7 Logs"),
)


class DashboardScreen(Screen[None]):
    """The panes, the refresh workers that feed them, and the actions behind y/n dialogs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(str(n), f"show_pane('{name}')", label, show=False)
            for n, (name, label) in enumerate(PANES, start=1)
        ),
        Binding("h", "step_pane(-1)", "Previous pane", show=False),
        Binding("l", "step_pane(1)", "Next pane", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("ctrl+r", "refresh_now", "Refresh", show=False),
    ]
    DEFAULT_CSS = """
    DashboardScreen TabbedContent { height: 1fr; }
    DashboardScreen TabPane { padding: 0; }
    """

    def __init__(
        self,
        sources: Sources | None,
        *,
        refresh_s: float,
        read_only: bool,
        hostname: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.sources = sources
        self.refresh_s = refresh_s
        self.read_only = read_only
        self.hostname = hostname
        self.clock = clock
        self._busy: set[str] = set()
        self._active = PANES[0][0]
        self._pending: dict[str, dict[str, Callable[[], None]]] = {}
        self.rounds = 0
        """Refresh rounds started (for tests waiting for fresh data)."""

    def compose(self) -> ComposeResult:
        yield StatusBar(read_only=self.read_only)
        with TabbedContent(initial="processes", id="panes"):
            with TabPane(PANES[0][1], id="processes"):
                yield ProcessesPane(hostname=self.hostname, read_only=self.read_only)
            with TabPane(PANES[1][1], id="queue"):
                yield QueuePane(read_only=self.read_only)
            with TabPane(PANES[2][1], id="gate"):
                yield GatePane()
            with TabPane(PANES[3][1], id="connectors"):
                yield ConnectorsPane(read_only=self.read_only)
            with TabPane(PANES[4][1], id="limits"):
                yield RateLimitsPane()
            with TabPane(PANES[5][1], id="health"):
                yield HealthPane()
            with TabPane(PANES[6][1], id="logs"):
                yield LogsPane(hide=self.sources.request_marker if self.sources else None)
        yield FilterBar()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ProcessTable).focus()
        if self.sources is not None:
            self.refresh_all()
            self.set_interval(self.refresh_s, self.refresh_all)
            self.run_worker(self._follow_events(), group="events", exit_on_error=False)

    # --- refreshing ----------------------------------------------------------------------

    def refresh_all(self) -> None:
        sources = self.sources
        if sources is None:
            return
        self.rounds += 1
        self._spawn("processes", lambda: _wrap(sources.processes(), ProcessesUpdated))
        self._spawn("queue", lambda: _wrap(sources.queue(), QueueUpdated))
        self._spawn("gate", lambda: _wrap(sources.gate(), GateUpdated))
        self._spawn("health", lambda: _wrap(sources.health(), HealthUpdated))
        self._spawn("connectors", lambda: _wrap(sources.connectors(), ConnectorsUpdated))
        self._spawn("limits", lambda: _wrap(sources.rate_limits(), RateLimitsUpdated))

    def _spawn(self, group: str, work: Callable[[], Awaitable[Message]]) -> None:
        """Run ``work`` in a worker unless the group's last one is still running."""
        if group in self._busy:
            return
        self._busy.add(group)

        async def run() -> None:
            try:
                message = await work()
            except Exception as exc:  # a source keeps its promise not to raise; a bug says so
                self.notify(f"{group}: {type(exc).__name__}: {exc}", severity="error")
                return
            finally:
                self._busy.discard(group)
            self.post_message(message)

        self.run_worker(run(), group=group, exit_on_error=False)

    async def _follow_events(self) -> None:
        """Follow the supervisor's event stream; reconnect every refresh while it is down."""
        assert self.sources is not None
        while True:
            try:
                async for batch in self.sources.event_batches():
                    if batch:
                        self.post_message(EventsReceived(batch))
                    else:
                        self.post_message(EventStreamChanged(None))
            except SupervisorDown as exc:
                self.post_message(EventStreamChanged(str(exc)))
            await asyncio.sleep(self.refresh_s)

    def action_refresh_now(self) -> None:
        self.refresh_all()

    # --- data arriving -------------------------------------------------------------------

    def _apply(self, pane: str, part: str, apply: Callable[[], None]) -> None:
        """Apply data to ``pane`` now when it is on screen, else as it comes into view (the
        newest data of each ``part`` only): a refresh costs the UI loop one pane's work."""
        if pane == self._active:
            apply()
        else:
            self._pending.setdefault(pane, {})[part] = apply

    def _show_pending(self, pane: str) -> None:
        for apply in self._pending.pop(pane, {}).values():
            apply()

    def on_processes_updated(self, message: ProcessesUpdated) -> None:
        data = message.data
        pane = self.query_one(ProcessesPane)
        pane.remember_processes(data)
        self._apply("processes", "draw", pane.draw)
        bar = self.query_one(StatusBar)
        if data.error:
            bar.set("supervisor", "down", "no supervisor")
            return
        states = [p.state for p in data.processes]
        running, total = states.count("running"), len(states)
        health: Health = "ok" if running == total else "warn"
        if "failed" in states or "backoff" in states:
            health = "down"
        bar.set("supervisor", health, f"supervisor {running}/{total} up")

    def on_queue_updated(self, message: QueueUpdated) -> None:
        data = message.data
        processes = self.query_one(ProcessesPane)
        processes.remember_fleet(data.snapshot)
        self._apply("processes", "draw", processes.draw)
        self.query_one(QueueSummary).record(data.snapshot.stats, data.snapshot.taken_at)
        limits = self.query_one(RateLimitsPane)
        limits.remember_counters(data.limiter)
        self._apply("limits", "draw", limits.draw)
        queue, now = self.query_one(QueuePane), self.clock()
        self._apply("queue", "queue", lambda: queue.show_queue(data, now))
        backend = data.snapshot.backend
        bar = self.query_one(StatusBar)
        stats = data.snapshot.stats
        if stats is None:
            bar.set("queue", "down", f"{backend} down")
        else:
            bar.set("queue", "warn" if stats.failed else "ok", backend)

    def on_gate_updated(self, message: GateUpdated) -> None:
        data = message.data
        gate = self.query_one(GatePane)
        gate.data = data
        self._apply("gate", "gate", lambda: gate.show_gate(data))
        health: Health = {"pass": "ok", "warn": "warn"}.get(data.status, "down")  # type: ignore[assignment]
        self.query_one(StatusBar).set("gate", health, f"gate {data.status}")

    def on_health_updated(self, message: HealthUpdated) -> None:
        data = message.data
        pane = self.query_one(HealthPane)
        self._apply("health", "health", lambda: pane.show_health(data))
        label = "web down" if data.web_down else ("web error" if data.error else "web")
        self.query_one(StatusBar).set("web", "ok" if data.error is None else "down", label)

    def on_connectors_updated(self, message: ConnectorsUpdated) -> None:
        pane = self.query_one(ConnectorsPane)
        self._apply("connectors", "connectors", lambda: pane.show_connectors(message.data))

    def on_rate_limits_updated(self, message: RateLimitsUpdated) -> None:
        pane = self.query_one(RateLimitsPane)
        pane.data = message.data
        self._apply("limits", "draw", pane.draw)

    def on_events_received(self, message: EventsReceived) -> None:
        self.query_one(LogsPane).add_events(message.events)
        if any(not isinstance(e, LogLine | Notice) for e in message.events):
            # A process started, exited or failed: show it now rather than next round.
            sources = self.sources
            if sources is not None:
                self._spawn("processes", lambda: _wrap(sources.processes(), ProcessesUpdated))

    def on_event_stream_changed(self, message: EventStreamChanged) -> None:
        self.query_one(LogsPane).stream_state(message.error)

    # --- panes, focus and the filter -----------------------------------------------------

    def main_widget(self, pane: str) -> Widget:
        """The widget that takes the keys in ``pane``."""
        targets: dict[str, type[Widget]] = {
            "processes": ProcessTable,
            "queue": DeadLetterTable,
            "gate": GatePane,
            "connectors": ConnectorTable,
            "limits": RateLimitTable,
            "health": HealthPane,
            "logs": LogPane,
        }
        return self.query_one(targets[pane])

    @property
    def active_pane(self) -> str:
        return self._active

    def action_show_pane(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane
        if pane != self._active:
            self._active = pane
            self._show_pending(pane)
        self.main_widget(pane).focus()

    def action_step_pane(self, step: int) -> None:
        names = [name for name, _ in PANES]
        index = (names.index(self.active_pane) + step) % len(names)
        self.action_show_pane(names[index])

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id
        if pane is not None:
            self._active = pane
            self._show_pending(pane)
            self.main_widget(pane).focus()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def on_filter_changed(self, message: FilterChanged) -> None:
        for table in self.query(DashTable):
            table.set_filter(message.text)
        self.query_one(LogPane).set_filter(message.text)
        self.query_one(StatusBar).set_filter(message.text.strip())
        if message.done:
            self.main_widget(self.active_pane).focus()

    # --- actions, each behind a y/n dialog -----------------------------------------------

    def on_process_action_requested(self, message: ProcessActionRequested) -> None:
        if self.read_only or self.sources is None:
            return
        sources, op, target = self.sources, message.op, message.target
        info = self.query_one(ProcessTable).infos.get(target)
        pid = f" (pid {info.pid})" if info and info.pid else ""
        detail = (
            "It stops taking work and drains in-flight jobs first; `opsctl restart` or r "
            "starts it again."
            if op == "stop"
            else "It drains, stops, and starts again with a fresh process."
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.notify(f"{op} {target}…", timeout=3)
                self._act(lambda: sources.process_action(op, target))

        self.app.push_screen(ConfirmScreen(f"{op.capitalize()} {target}{pid}?", detail), confirmed)

    def on_retry_dead_requested(self, message: RetryDeadRequested) -> None:
        if self.read_only or self.sources is None:
            return
        sources, job_id = self.sources, message.job_id

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._act(lambda: sources.retry_dead(job_id))

        self.app.push_screen(
            ConfirmScreen(
                f"Retry dead job {job_id} ({message.kind})?",
                "It goes back to the ready queue with a fresh attempt count.",
            ),
            confirmed,
        )

    def on_stage_change_requested(self, message: StageChangeRequested) -> None:
        if self.read_only or self.sources is None:
            return
        sources, verb, connector = self.sources, message.verb, message.connector_id
        row = self.query_one(ConnectorTable).connectors.get(connector)
        stage = row.stage if row else None
        detail = (
            "To stable only when the definition validates, a client is registered and "
            "resolves, and the check operation succeeds; refusals list every reason."
            if verb == "promote"
            else "No conditions apply to a demotion; it is recorded in the audit."
        )

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            self.notify(f"{verb} {connector}…", timeout=3)

            async def run() -> None:
                self.post_message(StageChangeFinished(await sources.change_stage(verb, connector)))

            self.run_worker(run(), group="actions", exit_on_error=False)

        question = f"{verb.capitalize()} {connector}: {stage or '?'} → {_target(verb, stage)}?"
        self.app.push_screen(ConfirmScreen(question, detail), confirmed)

    def _act(self, action: Callable[[], Awaitable[ActionOutcome]]) -> None:
        async def run() -> None:
            self.post_message(ActionFinished(await action()))

        self.run_worker(run(), group="actions", exit_on_error=False)

    def on_action_finished(self, message: ActionFinished) -> None:
        outcome = message.outcome
        self.notify(outcome.text, severity="information" if outcome.ok else "error", timeout=6)
        self.refresh_all()

    def on_stage_change_finished(self, message: StageChangeFinished) -> None:
        outcome = message.outcome
        if outcome.outcome in ("changed", "unchanged"):
            self.notify(outcome.summary, timeout=6)
        else:
            self.app.push_screen(OutcomeScreen(outcome))
        sources = self.sources
        if sources is not None:
            self._spawn("connectors", lambda: _wrap(sources.connectors(), ConnectorsUpdated))


async def _wrap(read: Awaitable[T], message: Callable[[T], Message]) -> Message:
    return message(await read)


# The registry's ladder (opsctl.connectors.registry.PROMOTION_ORDER), repeated here only to
# word the question: importing the registry would load jsonschema into the dashboard.
_LADDER = ("experimental", "beta", "stable")


def _target(verb: str, stage: str | None) -> str:
    """Where ``opsctl connectors promote|demote`` without ``--to`` takes a connector."""
    if stage not in _LADDER:
        return "the next stage" if verb == "promote" else "the stage below"
    index = _LADDER.index(stage) + (1 if verb == "promote" else -1)
    if verb == "promote":
        return _LADDER[min(index, len(_LADDER) - 1)] + (
            " (checked again)" if stage == "stable" else ""
        )
    return _LADDER[index] if index >= 0 else "nothing lower (it stays)"
