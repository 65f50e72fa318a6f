"""Concurrency policies: leases given back on completion, and lapsing when a worker dies."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.limiter._spawn import run
from tests.limiter._support import admitted, definition, policy, scope
from tests.limiter.conftest import OpenLimiter

CONC = policy("conc", "concurrency", max_in_flight=5)  # 4 leases for the fleet


async def test_a_released_lease_admits_the_next_request(new_limiter: OpenLimiter) -> None:
    defn = definition(CONC)
    op = defn.operation("ping")
    first, second = await new_limiter(), await new_limiter()
    running = [scope() for _ in range(4)]
    for s in running:
        assert await first.acquire(defn, op, s) is None
    wait = await second.acquire(defn, op, scope())
    assert wait is not None and 0 < wait <= 0.06  # asked again soon: leases end any moment
    await first.release(defn, op, running[0])
    # the release rides this process's next acquire: one round trip for both
    trips = first.state.round_trips
    assert await first.acquire(defn, op, scope()) is None
    assert first.state.round_trips == trips + 1
    assert await second.acquire(defn, op, scope()) is not None
    # with no acquire to carry it, a release goes alone within milliseconds
    await first.release(defn, op, running[1])
    await asyncio.sleep(0.05)
    assert await second.acquire(defn, op, scope()) is None


async def test_closing_gives_back_what_is_held(new_limiter: OpenLimiter) -> None:
    defn = definition(CONC)
    first, second = await new_limiter(), await new_limiter()
    assert all(await admitted(first, defn, 4))
    await first.close()
    assert all(await admitted(second, defn, 4))


@pytest.mark.slow
async def test_a_killed_workers_leases_lapse(
    new_limiter: OpenLimiter, state_args: dict[str, object]
) -> None:
    """A process takes every lease and dies by SIGKILL: the capacity comes back after the
    lease time, not never."""
    out = await asyncio.to_thread(
        run, "hold", {**state_args, "policies": [CONC], "n": 4, "lease_s": 1.5}
    )
    held_at = json.loads(out)["held_at"]
    limiter = await new_limiter()
    defn = definition(CONC)
    assert await admitted(limiter, defn, 1) == [False]
    await asyncio.sleep(max(0.0, held_at + 1.6 - time.time()) + 0.3)
    assert await admitted(limiter, defn, 4) == [True] * 4
