"""Waits within the cap are reservations: charged once, claimed without another round trip."""

from __future__ import annotations

import asyncio
import itertools
import time

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
    # Each request's slot is when it may go: at once, or after the wait it was given. Slots
    # are compared with the clock, not waits with constants, so a slow machine (time passing
    # between the acquires, refilling the bucket) cannot fail the test on its own.
    started = time.monotonic()
    waits: list[float | None] = []
    slots: list[float] = []
    for n, request in enumerate(requests):
        wait = await (first if n % 2 else second).acquire(defn, op, request)
        waits.append(wait)
        slots.append(time.monotonic() + (wait or 0.0))
        if n == 0:
            opened = time.monotonic()  # the bucket exists, full, by now
    assert waits[:8] == [None] * 8  # the burst
    # one every 1/32 s after it, in the order asked, across both limiters: never sooner than
    # the budget allows, never later than it needs
    assert all(b > a for a, b in itertools.pairwise(slots[8:]))
    for k, slot in enumerate(slots[8:], start=1):
        answered = slot - (waits[7 + k] or 0.0)
        assert started + k / 32 - 0.01 <= slot <= max(answered, opened + k / 32) + 0.03
    reserved = [n for n, wait in enumerate(waits) if wait is not None]
    assert reserved, "no request had to wait: the burst was not spent"
    trips = first.state.round_trips + second.state.round_trips
    assert trips == 20
    await asyncio.sleep(max(0.0, slots[-1] - time.monotonic()) + 0.01)
    for n in reserved:  # a reservation is claimed without another round trip
        assert await (first if n % 2 else second).acquire(defn, op, requests[n]) is None
    assert first.state.round_trips + second.state.round_trips == trips


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
    started = time.monotonic()
    answers: list[tuple[float | None, float]] = []  # (wait, when the answer came)
    for _ in range(14):
        wait = await limiter.acquire(defn, op, scope())
        answers.append((wait, time.monotonic()))
    assert [wait for wait, _ in answers[:8]] == [None] * 8
    # After the burst, slots come 1/32 s apart from when the bucket was made (between
    # `started` and the first answer). A wait within 0.1 s is a reservation of the next slot;
    # a longer one is refused and charges nothing, so the request after it is told the same
    # slot. Checked against the clock, so time passing between calls cannot fail it.
    slack = answers[0][1] - started + 0.015
    held = refused = 0
    for wait, at in answers[8:]:
        assert wait is not None
        slot = at + wait - started
        if wait <= 0.1:
            held += 1
            assert slot == pytest.approx(held / 32, abs=slack)
        else:
            refused += 1
            assert slot == pytest.approx((held + 1) / 32, abs=slack)
    assert held >= 3  # 0.1 s holds at least three slots, however slow the calls
    counters = (await limiter.counters())["acme"]
    assert (counters.admitted, counters.delayed, counters.refused) == (8 + held, held, refused)


async def test_a_pause_ends_in_reservations_after_it(new_limiter: OpenLimiter) -> None:
    defn = definition(PER_SECOND)
    op = defn.operation("ping")
    limiter = await new_limiter()
    await limiter.observe(defn, op, scope(), 429, {"Retry-After": "1"})
    waits = [await limiter.acquire(defn, op, scope()) for _ in range(10)]
    assert all(w is not None for w in waits)
    assert waits[0] == pytest.approx(1.0, abs=0.05)
    assert waits[9] == pytest.approx(1.0 + 2 / 32, abs=0.05)  # the burst of 8, then 1/32 s
