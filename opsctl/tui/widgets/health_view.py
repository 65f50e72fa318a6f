"""Feature flags and readiness, as the web daemon reports them."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from opsctl.tui import format as fmt
from opsctl.tui.data import HealthData


class HealthView(Static):
    DEFAULT_CSS = """
    HealthView { height: auto; padding: 0 1; }
    """

    shown: HealthData | None = None

    def show_health(self, data: HealthData) -> None:
        if data != self.shown:
            self.shown = data
            self.update(render_health(data))


def render_health(data: HealthData) -> Group:
    parts: list[Text | Table] = []
    title = Text("feature flags", style="bold")
    if data.environment:
        title.append(f"  ({data.environment})", style="dim")
    parts.append(title)
    flags = Table(box=None, show_header=False, pad_edge=False)
    flags.add_column(no_wrap=True)
    flags.add_column(no_wrap=True)
    flags.add_column()
    for flag in data.flags:
        value = Text("on", style="green") if flag.active else Text("off", style="dim")
        note = ""
        if flag.configured is not None and flag.configured != flag.active:
            note = f"configured {'on' if flag.configured else 'off'}, not active here"
        flags.add_row(f"  {flag.name}", value, Text(note, style="dim"))
    if data.flags:
        parts.append(flags)
    else:
        parts.append(Text("  none reported", style="dim"))
    parts.append(Text(""))
    ready = Text("readiness ", style="bold")
    if data.readiness_status:
        ready.append_text(fmt.status_text(data.readiness_status))
    parts.append(ready)
    checks = Table(box=None, show_header=False, expand=True, pad_edge=False)
    checks.add_column(no_wrap=True)
    checks.add_column(no_wrap=True)
    checks.add_column(ratio=1, overflow="fold")
    for check in data.readiness:
        checks.add_row(f"  {check.name}", fmt.status_text(check.status), check.output)
    parts.append(checks)
    return Group(*parts)
