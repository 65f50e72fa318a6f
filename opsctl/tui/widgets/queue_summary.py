"""The queue at a glance: counts, oldest waiting age, and a throughput sparkline."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Sparkline

from opsctl.queue import QueueStats
from opsctl.tui import format as fmt
from opsctl.tui.widgets.line import Line

HISTORY_S = 600.0
"""How far back the sparkline reaches: the last ten minutes."""


class QueueSummary(Widget):
    """Feed it one :class:`QueueStats` per refresh; it keeps the completed-per-minute samples."""

    DEFAULT_CSS = """
    QueueSummary { height: auto; padding: 0 1; }
    QueueSummary #counts { height: auto; }
    QueueSummary Horizontal { height: 1; }
    QueueSummary #spark-label { width: auto; color: $text-muted; }
    QueueSummary Sparkline { width: 1fr; height: 1; }
    QueueSummary #spark-range { width: auto; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.samples: deque[tuple[float, int]] = deque()

    def compose(self) -> ComposeResult:
        yield Line("", id="counts")
        with Horizontal():
            yield Line("done/min ", id="spark-label")
            yield Sparkline([], id="spark")
            yield Line("", id="spark-range")

    def record(self, stats: QueueStats | None, at: float) -> None:
        """Keep one throughput sample (cheap: on every refresh, shown or not)."""
        if stats is None:
            return
        self.samples.append((at, stats.completed_last_minute))
        while self.samples and self.samples[0][0] < at - HISTORY_S:
            self.samples.popleft()

    def show_stats(self, stats: QueueStats | None) -> None:
        counts = self.query_one("#counts", Line)
        if stats is None:
            counts.show(Text("queue counts unavailable", style="dim"))
            return
        counts.show(_counts(stats))
        self._draw()

    def set_history(self, samples: Iterable[tuple[float, int]]) -> None:
        """Replace the samples (frozen data for tests and the benchmark)."""
        self.samples = deque(samples)
        self._draw()

    def _draw(self) -> None:
        values = [float(v) for _, v in self.samples]
        self.query_one("#spark", Sparkline).data = values or [0.0]
        span = self.samples[-1][0] - self.samples[0][0] if len(self.samples) > 1 else 0.0
        top = max((v for _, v in self.samples), default=0)
        self.query_one("#spark-range", Line).show(f" max {top:,} · {fmt.age(span)}")


def _counts(stats: QueueStats) -> Text:
    text = Text()
    parts: list[tuple[str, int, str]] = [
        ("waiting", stats.waiting, "bold" if stats.waiting else ""),
        ("delayed", stats.delayed, ""),
        ("active", stats.active, "cyan" if stats.active else ""),
        ("dead", stats.failed, "bold red" if stats.failed else ""),
    ]
    for label, value, style in parts:
        text.append(f"{label} ", style="dim")
        text.append(f"{value:,}", style=style)
        text.append("  ")
    text.append("oldest ", style="dim")
    text.append(f"{stats.oldest_waiting_age_s:.1f}s")
    text.append(f"  ({stats.backend})", style="dim")
    return text
