"""``DashboardApp``: the thin Textual application behind ``opsctl dashboard``."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Callable
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from opsctl.tui.screens.dashboard import DashboardScreen
from opsctl.tui.screens.help import HelpScreen
from opsctl.tui.sources import Sources


class DashboardApp(App[None]):
    """Holds the options and the quit and help keys; the dashboard screen does the rest.

    ``sources`` None shows the panes without reading anything: tests and the benchmark post
    frozen data to the screen instead.
    """

    TITLE = "opsctl dashboard"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(
        self,
        sources: Sources | None,
        *,
        refresh_s: float = 2.0,
        read_only: bool = False,
        hostname: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.sources = sources
        self.refresh_s = refresh_s
        self.read_only = read_only
        self.hostname = hostname or socket.gethostname()
        self.clock = clock

    def on_mount(self) -> None:
        self.push_screen(
            DashboardScreen(
                self.sources,
                refresh_s=self.refresh_s,
                read_only=self.read_only,
                hostname=self.hostname,
                clock=self.clock,
            )
        )

    def on_ready(self) -> None:
        # What start-up built (modules, widgets, styles) lives as long as the app: out of the
        # collector's sight, a full collection no longer walks it on the UI loop (~100 ms).
        gc.freeze()

    @property
    def dashboard(self) -> DashboardScreen:
        screen = self.screen_stack[1] if len(self.screen_stack) > 1 else self.screen
        assert isinstance(screen, DashboardScreen)
        return screen

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(read_only=self.read_only))
