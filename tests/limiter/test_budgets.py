"""Each kind admits exactly its fleet budget; all matching policies admit, or none is charged."""

from __future__ import annotations

import time

import pytest

from opsctl.connectors.limiter_budget import Budget, Charge, fleet_budget
from tests.limiter._support import admitted, definition, policy, scope
from tests.limiter.conftest import OpenLimiter

HOURLY_100 = policy("hourly", "fixed_window", limit=100, window="PT1H")


def test_fleet_budgets_are_the_design_figures() -> None:
    defn = definition(
        HOURLY_100,
        policy("burst", "sliding_window", limit=50, window="PT1S"),
        policy("bucket", "token_bucket", capacity=40, refill_per_s=2),
        policy("conc", "concurrency", max_in_flight=25),
        policy("solo", "concurrency", max_in_flight=1),
    )
    hourly, burst, bucket, conc, solo = (fleet_budget(p) for p in defn.rate_limits.policies)
    # C = floor(0.8·100·0.2) = 16; r = 0.8·100·0.8/3600; cap floor(0.8·100) = 80
    assert (hourly.capacity, hourly.window_cap) == (16, 80)
    assert hourly.refill_per_s == pytest.approx(64 / 3600)
    # 50 per second: C = 8, r = 32/s, and 8 + 32·1 = 40 ≤ 50 in any second
    assert (burst.capacity, burst.refill_per_s, burst.window_cap) == (8, 32, 40)
    assert (bucket.capacity, bucket.refill_per_s) == (32, pytest.approx(1.6))
    assert conc.max_in_flight == 20
    assert solo.max_in_flight == 1  # floor(0.8) is 0; a limiter still lets one through


@pytest.mark.parametrize(
    ("spec", "budget"),
    [
        (HOURLY_100, 16),
        (policy("s", "sliding_window", limit=100, window="PT1H"), 16),
        (policy("b", "token_bucket", capacity=40, refill_per_s=0.01), 32),
        (policy("c", "concurrency", max_in_flight=10), 8),
    ],
    ids=["fixed_window", "sliding_window", "token_bucket", "concurrency"],
)
async def test_each_kind_admits_exactly_its_budget(
    new_limiter: OpenLimiter, spec: dict[str, object], budget: int
) -> None:
    defn = definition(spec)
    first, second = await new_limiter(), await new_limiter()
    got = await admitted(first, defn, budget - 3) + await admitted(second, defn, 10)
    assert sum(got) == budget and all(got[:budget]) and not any(got[budget:])
    # another scope value has a budget of its own
    assert all(await admitted(second, defn, 3, connection="conn_2"))


async def test_a_refusal_says_how_long_until_the_bucket_admits(new_limiter: OpenLimiter) -> None:
    defn = definition(HOURLY_100)
    limiter = await new_limiter()
    assert all(await admitted(limiter, defn, 16))
    wait = await limiter.acquire(defn, defn.operation("ping"), scope())
    assert wait == pytest.approx(3600 / 64, rel=0.02)  # one request at r = 64/3600 per s


async def test_the_window_count_is_a_hard_cap_for_both_window_kinds(
    new_limiter: OpenLimiter,
) -> None:
    """A roomy bucket under a window cap of 5: the window's count decides (same sums in Lua
    and in SQLite). Fixed: until the aligned window ends; sliding (two-window approximation):
    until the previous count has slid out far enough."""
    limiter = await new_limiter()
    state = limiter.state
    win = 3600.0
    for kind in ("fixed_window", "sliding_window"):
        budget = Budget(kind, capacity=100, refill_per_s=100, window_s=win, window_cap=5)
        charge = Charge("w", state.key("acme", kind, "x"), budget, 1.0)
        pause = state.key("acme", "~", "x") + ":pause"
        grants = [await state.admit("acme", pause, [charge], "", [], 30.0) for _ in range(7)]
        assert [g.outcome for g in grants] == ["now"] * 5 + ["wait"] * 2
        elapsed = time.time() % win
        # fixed: the window's end; sliding: the 5 slide out, (W - e) + W·(1 - (5 - 1)/5)
        slide = 0.0 if kind == "fixed_window" else win * 0.2
        expected = win - elapsed + slide
        assert grants[5].wait_s == pytest.approx(expected, abs=2)


async def test_points_charge_each_request_its_cost(new_limiter: OpenLimiter) -> None:
    defn = definition(
        policy("points", "fixed_window", limit=500, window="PT1H", unit="points"),
        operations=[
            {"id": "ping", "method": "GET", "path": "/ping"},
            {"id": "heavy", "method": "POST", "path": "/heavy", "costs": {"points": 20}},
        ],
    )
    limiter = await new_limiter()
    # C = floor(0.8·500·0.2) = 80 points: 4 heavy requests, then 0 points left
    assert await admitted(limiter, defn, 6, operation="heavy") == [True] * 4 + [False] * 2
    assert await admitted(limiter, defn, 1) == [False]


async def test_a_cost_above_the_burst_still_goes_out_at_the_long_run_rate(
    new_limiter: OpenLimiter,
) -> None:
    defn = definition(
        policy("points", "fixed_window", limit=50, window="PT1H", unit="points"),
        operations=[
            {"id": "ping", "method": "GET", "path": "/ping", "costs": {"points": 20}},
        ],
    )
    limiter = await new_limiter()
    # C = 8 < 20: admitted when the bucket is full, leaving a debt of 12 to refill at r
    assert await admitted(limiter, defn, 1) == [True]
    wait = await limiter.acquire(defn, defn.operation("ping"), scope())
    rate = 0.8 * 50 * 0.8 / 3600
    assert wait == pytest.approx((8 + 12) / rate, rel=0.02)


async def test_every_policy_must_admit_and_a_refusal_charges_none(
    new_limiter: OpenLimiter,
) -> None:
    defn = definition(
        HOURLY_100,  # per connection: C = 16
        policy(
            "b_only", "fixed_window", limit=25, window="PT1H", scope=[], match={"operations": ["b"]}
        ),  # one budget for everyone: C = 4
        operations=[
            {"id": "ping", "method": "GET", "path": "/ping"},
            {"id": "b", "method": "GET", "path": "/b"},
        ],
    )
    limiter = await new_limiter()
    assert await admitted(limiter, defn, 5, operation="b") == [True] * 4 + [False]
    # the refused fifth call did not take from 'hourly': 16 - 4 = 12 are left
    got = await admitted(limiter, defn, 13)
    assert sum(got) == 12 and not got[-1]
    # conn_1's 'hourly' is empty now, so b is refused there without touching 'b_only' …
    other = await new_limiter()
    assert await admitted(other, defn, 3, operation="b") == [False] * 3
    # … which another connection shows: b_only is still empty from the first four, and its
    # 'hourly' is full; the refusal reports the longest wait of the two
    wait = await other.acquire(defn, defn.operation("b"), scope("b", "/b", connection="conn_2"))
    b_rate = 0.8 * 25 * 0.8 / 3600
    assert wait == pytest.approx(1 / b_rate, rel=0.02)
    assert all(await admitted(other, defn, 16, connection="conn_2"))
