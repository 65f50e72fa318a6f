"""Rendering of check results for people (an aligned table) and machines (JSON)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from opsctl.verdict import CheckResult

_COLOURS = {"pass": "\033[32m", "warn": "\033[33m", "fail": "\033[31m"}
_RESET = "\033[0m"


def paint(status: str, stream: TextIO) -> str:
    if stream.isatty():
        return f"{_COLOURS.get(status, '')}{status}{_RESET}"
    return status


def render_checks(results: Sequence[CheckResult], stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    width = max((len(r.name) for r in results), default=0)
    for r in results:
        observed = ""
        if r.observed is not None and r.unit:
            observed = f"  [{r.observed} {r.unit}]"
        out.write(f"{r.name:<{width}}  {paint(r.status, out)}  {r.reason}{observed}\n")
    out.flush()
