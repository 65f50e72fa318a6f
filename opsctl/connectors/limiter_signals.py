"""Vendor signals: how long a vendor's answer asks the whole fleet to stop sending.

A throttle status, ``Retry-After``, a reset header with the remaining count at zero, and the
IETF ``RateLimit`` / ``RateLimit-Policy`` headers become one :class:`VendorPause`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDict, CIMultiDictProxy

from opsctl.connectors.executor_http import parse_reset, parse_retry_after
from opsctl.connectors.model import RateLimitSignals
from opsctl.constants import RATE_LIMIT_DEFAULT_PAUSE_S, RATE_LIMIT_MAX_PAUSE_S


@dataclass(frozen=True)
class VendorPause:
    """How long a vendor's answer says to stop sending, and whether it refused the request."""

    seconds: float
    throttled: bool
    reason: str


def _headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers
    return CIMultiDict(headers)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip().strip('"'))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _split(text: str, sep: str) -> list[str]:
    """Split a structured field on ``sep`` outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _sf_list(text: str) -> list[tuple[str, dict[str, str]]]:
    """An RFC 8941 list of items with parameters, leniently: ``"a";r=0;t=5, "b";r=9``."""
    items = []
    for member in _split(text, ","):
        head, *params = _split(member, ";")
        values = {}
        for param in params:
            key, _, value = param.partition("=")
            values[key.strip().lower()] = value.strip().strip('"')
        items.append((head.strip('"'), values))
    return items


def ietf_exhausted(headers: Mapping[str, str]) -> tuple[bool, float | None]:
    """Whether IETF rate-limit headers say a quota is used up, and the seconds to its reset.

    Reads draft-ietf-httpapi-ratelimit-headers in its forms: ``RateLimit: "q";r=0;t=30`` with
    ``RateLimit-Policy: "q";q=100;w=60`` (the window stands in for a missing ``t``), the
    dictionary ``RateLimit: limit=100, remaining=0, reset=30``, and the separate
    ``RateLimit-Remaining`` / ``RateLimit-Reset`` fields.
    """
    h = _headers(headers)
    found: list[tuple[float, float | None, str]] = []
    combined = h.get("RateLimit")
    if combined:
        items = _sf_list(combined)
        if items and all("=" in name for name, _ in items):  # the dictionary form
            fields = {k.strip().lower(): v for k, _, v in (n.partition("=") for n, _ in items)}
            remaining = _number(fields.get("remaining") or fields.get("r"))
            if remaining is not None:
                found.append((remaining, _number(fields.get("reset") or fields.get("t")), ""))
        else:
            for name, params in items:
                remaining = _number(params.get("r"))
                if remaining is not None:
                    found.append((remaining, _number(params.get("t")), name))
    remaining = _number(h.get("RateLimit-Remaining"))
    if remaining is not None:
        found.append((remaining, _number(h.get("RateLimit-Reset")), ""))
    used_up = [(reset, name) for remaining, reset, name in found if remaining <= 0]
    if not used_up:
        return False, None
    windows = {name: _number(p.get("w")) for name, p in _sf_list(h.get("RateLimit-Policy", ""))}
    resets = [reset if reset is not None else windows.get(name) for reset, name in used_up]
    known = [r for r in resets if r is not None]
    return True, max(known) if known else None


def vendor_pause(
    signals: RateLimitSignals,
    status: int,
    headers: Mapping[str, str],
    now: float,
    *,
    fallback_s: float = RATE_LIMIT_DEFAULT_PAUSE_S,
) -> VendorPause | None:
    """The pause a vendor's answer asks for, or ``None`` when it asks for none.

    A throttle status pauses for ``Retry-After`` (seconds or an HTTP date), else the reset
    header in its declared format, else the IETF reset, else ``fallback_s``. A remaining count
    of zero (the declared ``remaining_header`` or the IETF headers) pauses until the reset
    even on a success, so the next request is not the one refused. Never longer than
    ``RATE_LIMIT_MAX_PAUSE_S``.
    """
    h = _headers(headers)
    throttled = status in signals.throttle_statuses
    retry_after = None
    if signals.retry_after_header and (value := h.get(signals.retry_after_header)) is not None:
        retry_after = parse_retry_after(value, now)
    reset = None
    if signals.reset_header and signals.reset_format and signals.reset_header in h:
        reset = parse_reset(h[signals.reset_header], signals.reset_format, now)
    remaining = _number(h.get(signals.remaining_header)) if signals.remaining_header else None
    ietf_used_up, ietf_reset = ietf_exhausted(h)
    exhausted = (remaining is not None and remaining <= 0) or ietf_used_up
    if throttled:
        order = (("Retry-After", retry_after), ("reset header", reset), ("RateLimit", ietf_reset))
        reason = f"the vendor answered {status}"
    elif exhausted:
        order = (("reset header", reset), ("RateLimit", ietf_reset), ("Retry-After", retry_after))
        reason = "the vendor says no requests remain"
    else:
        return None
    for source, seconds in order:
        if seconds is not None:
            return VendorPause(
                min(seconds, RATE_LIMIT_MAX_PAUSE_S), throttled, f"{reason} ({source})"
            )
    return VendorPause(min(fallback_s, RATE_LIMIT_MAX_PAUSE_S), throttled, reason)


__all__ = [
    "VendorPause",
    "ietf_exhausted",
    "vendor_pause",
]
