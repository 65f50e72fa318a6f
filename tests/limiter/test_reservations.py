"""Waits within the cap are reservations: charged once, claimed without another round trip."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.limiter._support import definition, policy, scope
from tests.limiter.conftest import OpenLimiter

PER_SECOND = policy("per_second", "fixed_window", limit=50, window="PT1S")  # C = 8, r = 32/s


async def test_waiting_requests_are_served_in_order_at_the_budgets_pace(
    new_limiter: OpenLimiter,
) -> None:
    defn = definition(PER_SECOND)
    op = defn.operation("ping")
    first, second = await new_limiter(), await new_limiter()
    requests = [scope() for _ in range(20)]
    waits = [
        await (first if n % 2 else second).acquire(defn, op, r) for n, r in enumerate(requests)
    ]
    assert waits[:8] == [None] * 8  # the burst
    reserved = [w for w in waits[8:] if w is not None]
    assert len(reserved) == 12
    # one every 1/32 s, in the order asked, across both limiters
    assert all(b > a for a, b in itertools.pairwise(reserved))
    assert reserved[-1] == pytest.approx(12 / 32, abs=0.03)
    trips = first.state.round_trips + second.state.round_trips
    await asyncio.sleep(reserved[-1] + 0.01)
    for n, r in enumerate(requests[8:], start=8):
        assert await (first if n % 2 else second).acquire(defn, op, r) is None
    assert first.state.round_trips + second.state.round_trips == trips == 20


async def test_an_early_claim_is_told_the_rest_of_its_wait(new_limiter: OpenLimiter) -> None:
    defn = definition(PER_SECOND)
    op = defn.operation("ping")
    limiter = await new_limiter()
    for _ in range(8):
        assert await limiter.acquire(defn, op, scope()) is None
    request = scope()
    wait = await limiter.acquire(defn, op, request)
    assert wait is not None
    again = await limiter.acquire(defn, op, request)
    assert again is not None and 0 < again <= wait
    await asyncio.sleep(again)
    assert await limiter.acquire(defn, op, request) is None


async def test_past_the_cap_nothing_is_reserved_or_charged(new_limiter: OpenLimiter) -> None:
    defn = definition(PER_SECOND, retry={"max_wait_s": 0.1})
    op = defn.operation("ping")
    limiter = await new_limiter()
    waits = [await limiter.acquire(defn, op, scope()) for _ in range(14)]
    assert waits[:8] == [None] * 8
    # 0.1 s holds three more slots (1/32 s apart); the others are refused, uncharged
    assert all(w is not None and w <= 0.1 for w in waits[8:11])
    assert all(w is not None and w > 0.1 for w in waits[11:])
    assert waits[11] == pytest.approx(4 / 32, abs=0.02)
    counters = (await limiter.counters())["acme"]
    assert (counters.admitted, counters.delayed, counters.refused) == (11, 3, 3)


async def test_a_pause_ends_in_reservations_after_it(new_limiter: OpenLimiter) -> None:
    defn = definition(PER_SECOND)
    op = defn.operation("ping")
    limiter = await new_limiter()
    await limiter.observe(defn, op, scope(), 429, {"Retry-After": "1"})
    waits = [await limiter.acquire(defn, op, scope()) for _ in range(10)]
    assert all(w is not None for w in waits)
    assert waits[0] == pytest.approx(1.0, abs=0.05)
    assert waits[9] == pytest.approx(1.0 + 2 / 32, abs=0.05)  # the burst of 8, then 1/32 s
