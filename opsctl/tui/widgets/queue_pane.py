"""The Queue pane: counts and throughput, then the dead letters with their reasons."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical

from opsctl.tui.data import QueueData
from opsctl.tui.widgets._table import DashTable
from opsctl.tui.widgets.dead_letter_table import DeadLetterTable
from opsctl.tui.widgets.line import Line
from opsctl.tui.widgets.notice import Notice
from opsctl.tui.widgets.queue_summary import QueueSummary


class QueuePane(Vertical):
    DEFAULT_CSS = """
    QueuePane .caption { color: $text-muted; padding: 0 1; height: 1; }
    QueuePane #dead-detail { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, *, read_only: bool = False) -> None:
        super().__init__(id="queue-pane")
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        yield Notice(id="queue-notice")
        yield QueueSummary(id="queue-summary")
        yield Line("dead letters", classes="caption", id="dead-caption")
        yield DeadLetterTable(read_only=self.read_only, id="dead-letters")
        yield Line("", id="dead-detail")

    def show_queue(self, data: QueueData, now: float) -> None:
        snapshot = data.snapshot
        self.query_one(Notice).say(
            f"queue ({snapshot.backend}) down: {snapshot.error}" if snapshot.error else None
        )
        self.query_one(QueueSummary).show_stats(snapshot.stats)
        self.query_one(DeadLetterTable).show_jobs(data.dead, now)
        stats = snapshot.stats
        if stats is None:
            caption = "dead letters: unknown"
        elif not stats.failed:
            caption = "dead letters: none"
        elif stats.failed > len(data.dead):
            caption = f"dead letters: newest {len(data.dead)} of {stats.failed:,}"
        else:
            caption = f"dead letters: {stats.failed:,}"
        if not self.read_only and data.dead:
            caption += "  (r retries the selected job)"
        self.query_one("#dead-caption", Line).show(caption)
        self._describe_selected()

    def on_dash_table_row_highlighted(self, event: DashTable.RowHighlighted) -> None:
        self._describe_selected()

    def _describe_selected(self) -> None:
        """The selected dead letter's whole reason, which its row cuts at the screen's edge."""
        table = self.query_one(DeadLetterTable)
        job = table.jobs.get(table.selected_key or "")
        text = f"{job.id}: {job.last_error or 'no reason recorded'}" if job else ""
        self.query_one("#dead-detail", Line).show(text)
