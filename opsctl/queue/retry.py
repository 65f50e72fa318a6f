"""Retry timing: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random

from opsctl.constants import RETRY_BASE_S, RETRY_CAP_S

_RNG = random.Random()


def backoff_delay(
    attempt: int,
    *,
    base_s: float = RETRY_BASE_S,
    cap_s: float = RETRY_CAP_S,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before run ``attempt + 1`` after run ``attempt`` failed.

    Half the exponential step is fixed and half is jitter, so retries of jobs that failed
    together spread out without any retry coming sooner than half its step.
    """
    step = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return step / 2 + (rng or _RNG).uniform(0, step / 2)
