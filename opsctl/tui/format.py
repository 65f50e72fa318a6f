"""Short cell texts and colours shared by the widgets (pure functions, no Textual)."""

from __future__ import annotations

import time
from functools import lru_cache

from rich.text import Text

STATE_STYLES = {
    "running": "green",
    "starting": "cyan",
    "backoff": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "failed": "bold red",
}
STATUS_STYLES = {
    "pass": "bold green",
    "warn": "bold yellow",
    "fail": "bold red",
    "skip": "dim",
}
STAGE_STYLES = {
    "stable": "green",
    "beta": "cyan",
    "experimental": "yellow",
    "deprecated": "dim",
}


def age(seconds: float | None) -> str:
    """``42s``, ``3m07s``, ``5h02m``, ``2d03h``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def ago(epoch: float | None, now: float) -> str:
    return "-" if not epoch else age(now - epoch) + " ago"


def size(n: int | None) -> str:
    """Bytes as ``812K``, ``48.2M``, ``1.1G``: short enough for a narrow column."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit != "M" else f"{value:.1f}M"
        value /= 1024
    return f"{value:.1f}G"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def clock(epoch: float) -> str:
    """Local wall-clock time of day, as a log line shows it."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def styled(value: str, styles: dict[str, str]) -> Text:
    return _styled(value, styles.get(value, ""))


def status_text(status: str) -> Text:
    return _styled(status.upper(), STATUS_STYLES.get(status.lower(), ""))


@lru_cache(maxsize=1024)
def _styled(value: str, style: str) -> Text:
    # Shared: the tables and views that show it never change a Text they are given.
    return Text(value, style=style)


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
