"""The derivation formulas of docs/connectors.md on examples worked by hand, and a simulated
bucket as a property."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from opsctl.connectors.ratelimits import (
    BURST_SHARE,
    SAFETY_FACTOR,
    concurrency_cap,
    exact,
    nginx_rate_per_minute,
    process_share,
    proxy_burst,
    requests_admitted,
    token_bucket,
    window_bucket,
)


def test_the_factors_are_the_designs() -> None:
    assert (Fraction(4, 5), Fraction(1, 5)) == (SAFETY_FACTOR, BURST_SHARE)


def test_github_5000_an_hour() -> None:
    # C = floor(0.8 * 5000 * 0.2) = 800; r = 0.8 * 5000 * 0.8 / 3600 = 3200 / 3600 = 8/9 per s.
    burst, rate = window_bucket(5000, 3600)
    assert (burst, rate) == (800, Fraction(8, 9))
    assert math.isclose(float(rate), 0.8888888888888888)
    # Among 20 processes: r/20 = 2/45 per s each, burst max(1, floor(800/20)) = 40.
    assert process_share(rate, burst, 20) == (Fraction(2, 45), 40)
    # nginx: rate = floor(60 * 8/9) = floor(53.3) = 53r/m, burst = 800; two replicas: 26, 400.
    assert (nginx_rate_per_minute(rate, 1), proxy_burst(burst, 1)) == (53, 800)
    assert (nginx_rate_per_minute(rate, 2), proxy_burst(burst, 2)) == (26, 400)


def test_hubspot_100_per_10_seconds() -> None:
    # C = floor(16) = 16; r = 64 / 10 = 6.4 per s; nginx floor(384) = 384r/m; three: 128, 5.
    burst, rate = window_bucket(100, 10)
    assert (burst, rate) == (16, Fraction(32, 5))
    assert (nginx_rate_per_minute(rate, 3), proxy_burst(burst, 3)) == (128, 5)


def test_a_small_limit_has_no_fleet_burst_and_each_process_gets_one() -> None:
    # Airtable 5 a second: C = floor(0.8) = 0; r = 3.2 per s; 4 processes: 0.8 per s, burst 1.
    burst, rate = window_bucket(5, 1)
    assert (burst, rate) == (0, Fraction(16, 5))
    assert process_share(rate, burst, 4) == (Fraction(4, 5), 1)


def test_shopify_bucket_of_40_leaking_2_a_second() -> None:
    # C = floor(0.8 * 40) = 32; r = 0.8 * 2 = 1.6 per s; nginx floor(96) = 96r/m, burst 32.
    burst, rate = token_bucket(40, 2)
    assert (burst, rate) == (32, Fraction(8, 5))
    assert (nginx_rate_per_minute(rate, 1), proxy_burst(burst, 1)) == (96, 32)
    assert process_share(rate, burst, 5) == (Fraction(8, 25), 6)


def test_concurrency_of_25_among_4_processes() -> None:
    assert concurrency_cap(25, 4) == 5  # floor(0.8 * 25 / 4) = floor(5.0)
    assert concurrency_cap(25, 1) == 20
    assert concurrency_cap(100, 3) == 26  # floor(26.67)
    assert concurrency_cap(5, 10) == 0


def test_point_costs_admit_floor_of_limit_over_cost() -> None:
    assert requests_admitted(900, 1) == 900
    assert requests_admitted(900, 5) == 180
    assert requests_admitted(1000, 3) == 333
    assert requests_admitted(10, 0.1) == 100  # exact: 0.1 is read as 1/10, not the double
    assert requests_admitted(3, 5) == 0


def test_figures_are_exact_fractions_of_what_was_written() -> None:
    assert exact(0.1) == Fraction(1, 10)
    assert exact(2) == Fraction(2)
    assert window_bucket(25, 1) == (4, Fraction(16))  # floor(0.8*25*0.2) = floor(4.0), not 3


# --- the property: a fleet bucket never lets more than L through any window of W --------


def _admitted(capacity: int, rate: Fraction, attempts: list[Fraction]) -> list[Fraction]:
    """Times a token bucket (full at the start) admits, for requests tried at ``attempts``."""
    tokens, last, out = Fraction(capacity), Fraction(0), []
    for t in attempts:
        tokens = min(Fraction(capacity), tokens + (t - last) * rate)
        last = t
        if tokens >= 1:
            tokens -= 1
            out.append(t)
    return out


def _busiest_window(times: list[Fraction], window: Fraction) -> int:
    """The most admissions in any closed interval of length ``window``."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] < t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=100_000) | st.integers(min_value=1, max_value=20),
    window_s=st.sampled_from([1, 10, 60, 3_600, 86_400]) | st.integers(1, 100_000),
    gaps=st.lists(st.fractions(min_value=0, max_value=2, max_denominator=100), max_size=150),
)
def test_no_window_admits_more_than_the_limit(
    limit: int, window_s: int, gaps: list[Fraction]
) -> None:
    burst, rate = window_bucket(limit, window_s)
    window = Fraction(window_s)
    # The bound the derivation promises, with room for the extra request a GCRA or nginx
    # ("burst beyond one") reading of the bucket admits.
    assert burst + rate * window <= SAFETY_FACTOR * limit <= limit
    assert 1 + burst + math.floor(rate * window) <= limit
    # A greedy client, from a full bucket (the worst case), where the simulation stays small.
    if limit <= 2_000:
        greedy = [Fraction(0)] * (burst + 1) + [
            Fraction(i) / rate for i in range(1, math.floor(rate * window) + 2)
        ]
        for capacity in (burst, burst + 1):
            assert _busiest_window(_admitted(capacity, rate, greedy), window) <= limit
    # A client trying at random moments.
    times: list[Fraction] = []
    now = Fraction(0)
    for gap in gaps:
        now += gap * window / limit  # about one try per 1/L of a window: saturating
        times.append(now)
    for capacity in (burst, burst + 1):
        assert _busiest_window(_admitted(capacity, rate, times), window) <= limit


@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=100_000),
    window_s=st.integers(1, 86_400),
    processes=st.integers(1, 200),
)
def test_processes_sharing_nothing_stay_under_the_limit_when_the_burst_divides(
    limit: int, window_s: int, processes: int
) -> None:
    burst, rate = window_bucket(limit, window_s)
    each_rate, each_burst = process_share(rate, burst, processes)
    if burst // processes >= 1:  # otherwise derive warns: process-burst-zero
        assert processes * (each_burst + each_rate * window_s) <= limit
    assert processes * each_rate == rate
