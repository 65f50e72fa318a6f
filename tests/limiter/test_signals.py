"""Vendor feedback: what each signal asks for, and a pause every worker observes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from opsctl.connectors.limiter_signals import ietf_exhausted, vendor_pause
from opsctl.connectors.model import RateLimitSignals
from tests.limiter._spawn import run
from tests.limiter._support import admitted, definition, policy, scope
from tests.limiter.conftest import OpenLimiter

NOW = 1_800_000_000.0
PLAIN = RateLimitSignals()
GITHUB = RateLimitSignals(
    throttle_statuses=(403, 429),
    reset_header="X-RateLimit-Reset",
    reset_format="epoch_s",
    remaining_header="X-RateLimit-Remaining",
)


def http_date(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


@pytest.mark.parametrize(
    ("signals", "status", "headers", "seconds", "throttled"),
    [
        (PLAIN, 429, {"Retry-After": "7"}, 7, True),
        (PLAIN, 429, {"retry-after": http_date(NOW + 30)}, 30, True),
        (PLAIN, 429, {}, 2.5, True),  # says nothing: the fallback
        (PLAIN, 200, {"Retry-After": "7"}, None, False),  # not a throttle: ignored
        (GITHUB, 403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(NOW + 90)}, 90, True),
        (
            GITHUB,
            200,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(NOW + 90)},
            90,
            False,
        ),
        (
            GITHUB,
            200,
            {"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": str(NOW + 90)},
            None,
            False,
        ),
        (
            RateLimitSignals(reset_header="X-Reset", reset_format="epoch_ms"),
            429,
            {"X-Reset": str(int((NOW + 4) * 1000))},
            4,
            True,
        ),
        (
            PLAIN,
            200,
            {"RateLimit": '"burst";r=0;t=12', "RateLimit-Policy": '"burst";q=100;w=60'},
            12,
            False,
        ),
        (
            PLAIN,
            200,
            {"RateLimit": '"burst";r=0', "RateLimit-Policy": '"burst";q=100;w=60'},
            60,
            False,
        ),
        (PLAIN, 200, {"RateLimit": '"a";r=5;t=1, "b";r=0;t=20'}, 20, False),
        (PLAIN, 200, {"RateLimit": "limit=10, remaining=0, reset=5"}, 5, False),
        (PLAIN, 200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "8"}, 8, False),
        (PLAIN, 200, {"RateLimit": '"burst";r=3;t=12'}, None, False),
        (PLAIN, 429, {"Retry-After": "999999"}, 3600, True),  # believed only so far
    ],
)
def test_vendor_signals(
    signals: RateLimitSignals,
    status: int,
    headers: dict[str, str],
    seconds: float | None,
    throttled: bool,
) -> None:
    pause = vendor_pause(signals, status, headers, NOW, fallback_s=2.5)
    if seconds is None:
        assert pause is None
        return
    assert pause is not None
    assert pause.seconds == pytest.approx(seconds, abs=0.01)
    assert pause.throttled is throttled


def test_ietf_headers_without_an_exhausted_quota() -> None:
    assert ietf_exhausted({}) == (False, None)
    assert ietf_exhausted({"RateLimit": "garbage;;,"}) == (False, None)


async def test_a_429_pauses_the_scope_for_every_limiter(new_limiter: OpenLimiter) -> None:
    defn = definition(policy("hourly", "fixed_window", limit=1000, window="PT1H"))
    op = defn.operation("ping")
    answered, other = await new_limiter(), await new_limiter()
    await answered.observe(defn, op, scope(), 429, {"Retry-After": "2"})
    wait = await other.acquire(defn, op, scope())
    assert wait == pytest.approx(2, abs=0.1)
    # the policy is per credential: another connection is not paused
    assert await admitted(other, defn, 1, connection="conn_2") == [True]
    counters = (await other.counters())["acme"]
    assert (counters.throttled, counters.paused, counters.delayed) == (1, 1, 1)  # reserved
    assert counters.paused_for_s == pytest.approx(2, abs=0.2)


async def test_a_call_no_policy_covers_pauses_its_connection(new_limiter: OpenLimiter) -> None:
    defn = definition()
    op = defn.operation("ping")
    answered, other = await new_limiter(), await new_limiter()
    await answered.observe(defn, op, scope(), 503, {})  # not a throttle status here
    assert await admitted(other, defn, 1) == [True]
    await answered.observe(defn, op, scope(), 429, {})
    wait = await other.acquire(defn, op, scope())
    assert wait == pytest.approx(1, abs=0.1)  # no header and no window: the default second
    assert await admitted(other, defn, 1, connection="conn_2") == [True]


async def test_a_longer_pause_is_never_shortened(new_limiter: OpenLimiter) -> None:
    defn = definition(policy("minute", "sliding_window", limit=100, window="PT1M"))
    op = defn.operation("ping")
    limiter = await new_limiter()
    await limiter.observe(defn, op, scope(), 429, {})  # no header: the window, 60 s
    await limiter.observe(defn, op, scope(), 429, {"Retry-After": "1"})
    wait = await limiter.acquire(defn, op, scope())
    assert wait == pytest.approx(60, abs=0.5)


@pytest.mark.slow
async def test_a_pause_set_in_one_process_stops_another(
    state_args: dict[str, object],
) -> None:
    policies = [policy("hourly", "fixed_window", limit=1000, window="PT1H")]
    args = {**state_args, "policies": policies}
    assert json.loads(await asyncio.to_thread(run, "wait", args)) is None
    out = await asyncio.to_thread(run, "throttle", {**args, "headers": {"Retry-After": "20"}})
    assert out.strip() == "ok"
    wait = json.loads(await asyncio.to_thread(run, "wait", args))
    assert 15 < wait <= 20.1
