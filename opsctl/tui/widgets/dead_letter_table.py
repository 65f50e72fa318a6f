"""Dead-lettered jobs, newest first, with the reason each died; ``r`` retries one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.binding import Binding, BindingType

from opsctl.queue import JobInfo
from opsctl.tui import format as fmt
from opsctl.tui.messages import RetryDeadRequested
from opsctl.tui.widgets._table import DashTable, Row


class DeadLetterTable(DashTable):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "retry", "Retry job")]
    COLUMNS = (
        ("JOB", None),
        ("KIND", None),
        ("TRIES", None),
        ("DIED", None),
        ("REASON", None),
    )
    DEFAULT_CSS = """
    DeadLetterTable { height: 1fr; }
    """

    def __init__(self, *, read_only: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.read_only = read_only
        self.jobs: dict[str, JobInfo] = {}

    def show_jobs(self, jobs: Sequence[JobInfo], now: float) -> None:
        self.jobs = {job.id: job for job in jobs}
        self.show([_row(job, now) for job in jobs])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry":
            return not self.read_only
        return True

    def action_retry(self) -> None:
        job = self.jobs.get(self.selected_key or "")
        if job is not None and not self.read_only:
            self.post_message(RetryDeadRequested(job.id, job.kind))


def _row(job: JobInfo, now: float) -> Row:
    reason = (job.last_error or "-").replace("\n", " ")
    return (
        job.id,
        (
            job.id[:12],
            job.kind,
            f"{job.attempts}/{job.max_attempts}",
            fmt.ago(job.finished_at, now),
            reason if len(reason) <= 200 else reason[:199] + "…",
        ),
    )
