"""The limiter's counters where operators look: the heartbeat body and ``GET /metrics``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from daemons.web import create_app
from daemons.web.metrics import render
from opsctl.connectors.jobs import open_executor
from opsctl.connectors.limiter import SharedLimiter, open_limiter
from opsctl.health import snapshot_queue
from opsctl.queue import connect_queue
from opsctl.settings import Settings
from opsctl.verdict import QueueSnapshot, heartbeat_body, queue_checks
from tests.conftest import SettingsFactory
from tests.limiter._support import admitted, definition, policy, scope

TOKEN = "operator-token-0123456789abcdef"


@pytest.fixture
def settings(
    limiter_backend: str, make_settings: SettingsFactory, redis_url: str, redis_prefix: str
) -> Settings:
    if limiter_backend == "redis":
        return make_settings(
            QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix, OPSCTL_API_TOKEN=TOKEN
        )
    return make_settings(OPSCTL_API_TOKEN=TOKEN)


async def some_traffic(limiter: SharedLimiter) -> None:
    defn = definition(policy("hourly", "fixed_window", limit=25, window="PT1H"))  # C = 4
    assert await admitted(limiter, defn, 6) == [True] * 4 + [False] * 2
    await limiter.observe(defn, defn.operation("ping"), scope(), 429, {"Retry-After": "30"})


async def test_the_heartbeat_body_carries_the_counters(settings: Settings) -> None:
    async with open_limiter(settings) as limiter:
        await some_traffic(limiter)
    queue = await connect_queue(settings)
    try:
        snapshot = await snapshot_queue(queue, settings, rate_limits=True)
    finally:
        await queue.close()
    results = queue_checks(snapshot, drain_threshold_s=60)
    assert "rateLimits" not in heartbeat_body(snapshot, results, detailed=False)
    acme = heartbeat_body(snapshot, results, detailed=True)["rateLimits"]["connectors"]["acme"]
    assert {k: acme[k] for k in ("admitted", "delayed", "refused", "throttled", "paused")} == {
        "admitted": 4,
        "delayed": 0,
        "refused": 2,  # 225 s away: past the 30 s a worker may wait
        "throttled": 1,
        "paused": 1,
    }
    assert 28 < acme["pausedForSeconds"] <= 30


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


async def test_metrics_in_prometheus_text_with_the_token(settings: Settings, served: str) -> None:
    async with open_limiter(settings) as limiter:
        await some_traffic(limiter)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served}/metrics") as resp:
            assert resp.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"{served}/metrics", headers=auth) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = await resp.text()
    backend = settings.queue_backend
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert samples[f'opsctl_queue_up{{backend="{backend}"}}'] == "1"
    assert samples[f'opsctl_queue_waiting{{backend="{backend}"}}'] == "0"
    assert samples['opsctl_workers{state="alive"}'] == "0"
    assert samples['opsctl_rate_limit_admitted_total{connector="acme"}'] == "4"
    assert samples['opsctl_rate_limit_refused_total{connector="acme"}'] == "2"
    assert samples['opsctl_rate_limit_throttled_total{connector="acme"}'] == "1"
    assert 28 < float(samples['opsctl_rate_limit_paused_seconds{connector="acme"}']) <= 30
    assert "# TYPE opsctl_rate_limit_admitted_total counter" in text


def test_an_unreachable_queue_and_odd_names_still_render() -> None:
    snapshot = QueueSnapshot(
        "redis",
        error="down",
        rate_limits={
            "connectors": {
                'we"ird\\': {
                    "admitted": 1,
                    "delayed": 0,
                    "refused": 0,
                    "throttled": 0,
                    "paused": 0,
                    "pausedForSeconds": 0.0,
                }
            }
        },
    )
    text = render(snapshot)
    assert 'opsctl_queue_up{backend="redis"} 0' in text
    assert "opsctl_queue_waiting" not in text
    assert 'opsctl_rate_limit_admitted_total{connector="we\\"ird\\\\"} 1' in text


async def test_the_worker_executor_runs_with_the_shared_limiter(settings: Settings) -> None:
    async with open_executor(settings) as executor:
        assert isinstance(executor.limiter, SharedLimiter)
