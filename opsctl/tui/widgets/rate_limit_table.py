"""The derived rate limits per connector and policy, with the limiter's live counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text

from opsctl.tui import format as fmt
from opsctl.tui.data import LimiterCounts, RateLimitRow
from opsctl.tui.widgets._table import DashTable, Row


class RateLimitTable(DashTable):
    """One row a policy, grouped by connector: its live counts (the limiter counts per
    connector) stand on its first row, and its name is dimmed on the others. The columns an
    operator watches come first; the rest scroll, and the pane's detail line spells out the
    selected policy."""

    COLUMNS = (
        ("CONNECTOR", None),
        ("ADMITTED", None),
        ("THROTTLED", None),
        ("POLICY", None),
        ("SAFE FLEET", None),
        ("VENDOR LIMIT", None),
        ("EACH PROCESS", None),
        ("KIND", None),
    )
    DEFAULT_CSS = """
    RateLimitTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.limits: dict[str, RateLimitRow] = {}

    def show_limits(
        self, rows: Sequence[RateLimitRow], counters: Mapping[str, LimiterCounts]
    ) -> None:
        self.limits = {f"{r.connector}/{r.policy}": r for r in rows}
        out: list[Row] = []
        previous = None
        for r in rows:
            first = r.connector != previous
            previous = r.connector
            out.append(_row(r, counters.get(r.connector) if first else None, first=first))
        self.show(out)


def _row(r: RateLimitRow, counts: LimiterCounts | None, *, first: bool) -> Row:
    admitted = throttled = Text("")
    if first:
        admitted = Text(fmt.count(counts.admitted) if counts else "-")
        throttled = Text(
            fmt.count(counts.throttled) if counts else "-",
            style="bold red" if counts and counts.throttled else "",
        )
    return (
        f"{r.connector}/{r.policy}",
        (
            Text(r.connector, style="" if first else "dim"),
            admitted,
            throttled,
            Text(r.policy, style="yellow" if r.warnings else ""),
            r.fleet,
            r.limit,
            r.per_process,
            r.kind,
        ),
    )
