"""ISO-8601 durations of fixed length (``PT1S``, ``PT10S``, ``PT1H``, ``P1D``) as seconds.

Years and months have no fixed length, so a rate-limit window cannot be one: ``P1M`` is
refused with a hint to write days instead.
"""

from __future__ import annotations

import json
import re

_DURATION = re.compile(
    r"P(?!$)"
    r"(?:(?P<years>\d+(?:[.,]\d+)?)Y)?"
    r"(?:(?P<months>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:[.,]\d+)?)W)?"
    r"(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?!$)"
    r"(?:(?P<hours>\d+(?:[.,]\d+)?)H)?"
    r"(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?"
    r")?"
)
_SECONDS = {"weeks": 604_800.0, "days": 86_400.0, "hours": 3_600.0, "minutes": 60.0, "seconds": 1.0}


class DurationError(ValueError):
    """The text is not an ISO-8601 duration of fixed length above zero."""


def parse_duration(text: str) -> float:
    """``PT10S`` → ``10.0``; raises :class:`DurationError` with a sentence saying why not."""
    match = _DURATION.fullmatch(text.strip().upper()) if len(text) <= 64 else None
    if match is None:
        raise DurationError(
            f"{json.dumps(text[:64])} is not an ISO-8601 duration "
            "(examples: PT1S, PT10S, PT1M, PT1H, P1D)"
        )
    if match["years"] or match["months"]:
        raise DurationError(
            f"{json.dumps(text)} uses years or months, which have no fixed length; "
            "write days (P30D)"
        )
    total = 0.0
    for name, factor in _SECONDS.items():
        if match[name]:
            total += float(match[name].replace(",", ".")) * factor
    if total <= 0:
        raise DurationError(
            f"{json.dumps(text)} is a duration of zero; a window must be longer than that"
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest ISO-8601 spelling of a whole number of seconds (``3600`` → ``PT1H``)."""
    if seconds > 0 and seconds % 86_400 == 0:
        return f"P{int(seconds // 86_400)}D"
    for unit, factor in (("H", 3_600), ("M", 60)):
        if seconds > 0 and seconds % factor == 0:
            return f"PT{int(seconds // factor)}{unit}"
    return f"PT{seconds:g}S"
