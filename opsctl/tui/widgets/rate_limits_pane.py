"""The Rate limits pane: the derived table and the limiter's live counts."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.containers import Vertical

from opsctl.tui.data import LimiterCounts, RateLimitsData
from opsctl.tui.widgets._table import DashTable
from opsctl.tui.widgets.line import Line
from opsctl.tui.widgets.notice import Notice
from opsctl.tui.widgets.rate_limit_table import RateLimitTable


class RateLimitsPane(Vertical):
    DEFAULT_CSS = """
    RateLimitsPane .caption { color: $text-muted; padding: 0 1; height: auto; }
    RateLimitsPane #limit-detail { height: auto; max-height: 5; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__(id="limits-pane")
        self.data = RateLimitsData()
        self.counters: Mapping[str, LimiterCounts] = {}

    def compose(self) -> ComposeResult:
        yield Notice(id="limits-notice")
        yield Line("", classes="caption", id="limits-caption")
        yield RateLimitTable(id="limits")
        yield Line("", id="limit-detail")

    def remember_counters(self, counters: Mapping[str, LimiterCounts]) -> None:
        """Keep the limiter's counters, read with the queue (cheap: on every refresh)."""
        self.counters = counters

    def show_limits(self, data: RateLimitsData) -> None:
        self.data = data
        self.draw()

    def draw(self) -> None:
        data = self.data
        self.query_one(Notice).say(data.error)
        if data.error is None or data.rows:
            self.query_one(RateLimitTable).show_limits(data.rows, self.counters)
        caption = f"safe figures for {data.topology}" if data.topology else ""
        warned = sum(1 for r in data.rows if r.warnings)
        if warned:
            caption += f"; {warned} with warnings (yellow)"
        self.query_one("#limits-caption", Line).show(caption)
        self._describe_selected()

    def on_dash_table_row_highlighted(self, event: DashTable.RowHighlighted) -> None:
        self._describe_selected()

    def _describe_selected(self) -> None:
        table = self.query_one(RateLimitTable)
        row = table.limits.get(table.selected_key or "")
        detail = self.query_one("#limit-detail", Line)
        if row is None:
            detail.show("")
            return
        scope = f", per {row.scope}" if row.scope else ""
        lines = [
            f"{row.connector}/{row.policy} ({row.kind}{scope}): vendor {row.limit}; "
            f"fleet {row.fleet}; each process {row.per_process}"
        ]
        counts = self.counters.get(row.connector)
        if counts is not None:
            pause = f", paused for {counts.paused_for_s:.0f}s" if counts.paused_for_s else ""
            lines.append(
                f"{row.connector} live: {counts.admitted:,} admitted ({counts.delayed:,} after a "
                f"wait), {counts.refused:,} refused, {counts.throttled:,} throttled by the "
                f"vendor, {counts.paused:,} pause(s){pause}"
            )
        lines += [f"⚠ {w}" for w in row.warnings]
        detail.show("\n".join(lines))
