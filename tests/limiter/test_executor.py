"""The executor with the shared limiter against a vendor that enforces its limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from opsctl.connectors.executor import ExecutionResult, execute
from opsctl.connectors.limiter import SharedLimiter
from opsctl.connectors.model import Definition
from tests.limiter._support import definition, policy
from tests.limiter._vendor import CountingVendor
from tests.limiter.conftest import OpenLimiter


class NoCredentials:
    async def credentials(
        self, connection_id: str | None, definition: Definition
    ) -> dict[str, str]:
        return {}

    async def refreshed(
        self, connection_id: str | None, definition: Definition, rejected: object
    ) -> dict[str, str]:
        return {}


@pytest.fixture
async def vendor() -> AsyncIterator[CountingVendor]:
    server = await CountingVendor([(50, 1.0)]).start()
    yield server
    await server.stop()


def acme(vendor: CountingVendor, *policies: dict[str, object]) -> Definition:
    return definition(
        *policies,
        base_url=vendor.url,
        operations=[
            {"id": "ping", "method": "GET", "path": "/work"},
            {"id": "flaky", "method": "GET", "path": "/throttle-once"},
        ],
    )


async def run(
    defn: Definition, limiter: SharedLimiter, operation: str = "ping", connection: str = "conn_1"
) -> ExecutionResult:
    async with aiohttp.ClientSession() as session:
        return await execute(
            defn,
            operation,
            {},
            credentials=NoCredentials(),
            connection_id=connection,
            config={},
            session=session,
            limiter=limiter,
            allow_loopback_http=True,
        )


async def test_two_limiters_keep_the_vendor_under_its_limit(
    vendor: CountingVendor, new_limiter: OpenLimiter
) -> None:
    defn = acme(vendor, policy("per_second", "fixed_window", limit=50, window="PT1S"))
    limiters = [await new_limiter(), await new_limiter()]  # two workers
    jobs = 80
    slots = asyncio.Semaphore(20)

    async def one(n: int) -> ExecutionResult:
        async with slots:
            return await run(defn, limiters[n % 2])

    started = time.perf_counter()
    results = await asyncio.gather(*(one(n) for n in range(jobs)))
    elapsed = time.perf_counter() - started
    assert {r.status for r in results} == {"succeeded"}
    assert vendor.statuses("/work") == [200] * jobs  # not one 429
    assert max(vendor.windows.values()) <= 40  # floor(0.8·50) in any aligned second
    # C = 8 at once, then r = 32/s: the budget, not the vendor, set the pace, and was used
    floor = (jobs - 8) / 32
    assert floor * 0.95 <= elapsed <= floor * 1.3 + 0.3


async def test_a_429_pauses_every_worker_until_retry_after(
    vendor: CountingVendor, new_limiter: OpenLimiter
) -> None:
    defn = acme(vendor, policy("per_second", "fixed_window", limit=1000, window="PT1S"))
    answered, other = await new_limiter(), await new_limiter()
    first = asyncio.create_task(run(defn, answered, "flaky"))
    for _ in range(1000):  # until the 429 has been observed
        counters = await other.counters()
        if "acme" in counters and counters["acme"].throttled:
            break
        await asyncio.sleep(0.005)
    others = await asyncio.gather(*(run(defn, other, "flaky") for _ in range(3)))
    assert (await first).status == "succeeded" and {r.status for r in others} == {"succeeded"}
    [(throttled_at, _, status), *rest] = vendor.answers
    assert status == 429 and [s for _, _, s in rest] == [200] * 4
    assert min(t for t, _, _ in rest) - throttled_at >= 0.95  # nobody sent during the pause


async def test_a_wait_past_the_cap_is_rescheduled_without_sending(
    vendor: CountingVendor, new_limiter: OpenLimiter
) -> None:
    defn = acme(vendor, policy("hourly", "fixed_window", limit=2, window="PT1H"))
    limiter = await new_limiter()
    assert (await run(defn, limiter)).status == "succeeded"
    result = await run(defn, limiter)
    assert result.status == "rescheduled" and result.timings.requests == 0
    # C = 0: one at a time every 1/r s, and floor(0.8·2) = 1 an aligned hour: the later
    now, rate = time.time(), 0.8 * 2 * 0.8 / 3600
    assert result.retry_at == pytest.approx(now + max(1 / rate, 3600 - now % 3600), abs=5)
    assert len(vendor.answers) == 1
