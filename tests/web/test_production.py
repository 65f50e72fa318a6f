"""``/api/production/ready`` and the queue heartbeat, with and without the operator token."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from opsctl.queue import Heartbeat, NewJob, connect_queue
from opsctl.settings import Settings
from tests.conftest import Serve, SettingsFactory

TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as resp:
        return resp.status, await resp.json()


async def add_worker(settings: Settings, pid: int = 4242) -> None:
    queue = await connect_queue(settings)
    try:
        await queue.beat(
            Heartbeat(id=f"w:{pid}", role="worker", started_at=time.time(), processed=3), ttl_s=15
        )
    finally:
        await queue.close()


async def test_heartbeat_fails_503_without_workers_then_passes(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    redis_url: str,
    redis_prefix: str,
) -> None:
    settings = make_settings(
        QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix, OPSCTL_API_TOKEN=TOKEN
    )
    base = await serve(settings)
    url = f"{base}/api/production/queue/heartbeat"
    status, body = await get(http, url)
    assert status == 503
    assert set(body) == {"status"}
    assert body["status"]["status"] == "fail"
    assert body["status"]["reasons"] == [
        "workers: no worker heartbeat is fresh; start a worker: opsctl daemon worker"
    ]
    await add_worker(settings)
    status, body = await get(http, url)
    assert (status, body["status"]["status"], set(body)) == (200, "pass", {"status"})
    status, full = await get(http, url, headers=AUTH)
    assert status == 200
    assert full["queue"]["backend"] == "redis" and full["queue"]["waiting"] == 0
    assert full["workers"]["alive"] == 1
    assert full["workers"]["items"][0]["id"] == "w:4242"
    assert full["workers"]["items"][0]["processed"] == 3


async def test_heartbeat_warns_200_on_dead_letters(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    base = await serve(settings)
    await add_worker(settings)
    queue = await connect_queue(settings)
    try:
        await queue.enqueue(NewJob("noop"))
        [job] = await queue.reserve(1, owner="t", lease_s=30)
        await queue.fail(job, "vendor said no", retry_at=None)
    finally:
        await queue.close()
    status, body = await get(http, f"{base}/api/production/queue/heartbeat")
    assert status == 200
    assert body["status"]["status"] == "warn"
    assert body["status"]["reasons"] == [
        "dead_letters: 1 dead-lettered job(s); see opsctl queue dead"
    ]


async def test_production_ready_refuses_embedded_sqlite(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(
        make_settings(OPSCTL_ENV="production", OPSCTL_API_TOKEN=TOKEN, OPSCTL_HOST="127.0.0.1")
    )
    status, body = await get(http, f"{base}/api/production/ready")
    assert status == 503
    assert body["checks"]["database"]["output"].startswith("the database is SQLite")
    assert body["checks"]["queue"]["output"].startswith("the queue is the embedded SQLite one")
    # /api/health/ready does not judge the choice of backends.
    assert (await get(http, f"{base}/api/health/ready"))[0] == 200


async def test_production_ready_passes_on_postgres_and_redis(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    pg_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    env = dict(
        OPSCTL_ENV="production",
        OPSCTL_API_TOKEN=TOKEN,
        DATABASE_URL=pg_url,
        QUEUE_REDIS_URL=redis_url,
        OPSCTL_REDIS_PREFIX=redis_prefix,
    )
    base = await serve(make_settings(**env))
    status, body = await get(http, f"{base}/api/production/ready", headers=AUTH)
    assert status == 503
    assert body["checks"]["keys"]["output"].startswith(
        "OPSCTL_MASTER_KEY_REF must be set when OPSCTL_ENV=production"
    )
    assert body["checks"]["database"]["status"] == "pass"
    assert body["checks"]["secrets"]["status"] == "pass"

    master = "ab" * 32  # 256 bits in hex, read through the env secret provider
    base = await serve(
        make_settings(**env, OPSCTL_MASTER_KEY_REF="env:TEST_MASTER_KEY", TEST_MASTER_KEY=master)
    )
    status, body = await get(http, f"{base}/api/production/ready", headers=AUTH)
    assert status == 200, body
    assert body["checks"]["database"]["backend"] == "postgresql"
    assert body["checks"]["queue"]["backend"] == "redis"
    assert body["checks"]["keys"]["status"] in ("pass", "warn")
    assert master not in str(body)


async def test_development_production_ready_allows_sqlite(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(make_settings())
    assert (await get(http, f"{base}/api/production/ready"))[0] == 200


async def test_web_process_keeps_its_own_heartbeat(
    serve: Serve, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    await serve(settings)
    queue = await connect_queue(settings)
    try:
        views = await queue.heartbeats(ttl_s=15)
    finally:
        await queue.close()
    assert [v.heartbeat.role for v in views] == ["web"]
    assert views[0].live
