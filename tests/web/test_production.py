"""``/api/production/ready`` and the queue heartbeat, with and without the operator token."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis

from opsctl.queue import Heartbeat, NewJob, connect_queue
from opsctl.settings import Settings
from tests._support import Daemon, PrivateRedis, free_port
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


async def test_dead_letters_never_change_the_heartbeats_status(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    """Only an operator clears dead letters: they show in the details, not in the status
    that pipelines gate on."""
    settings = make_settings(OPSCTL_API_TOKEN=TOKEN)
    base = await serve(settings)
    await add_worker(settings)
    queue = await connect_queue(settings)
    try:
        await queue.enqueue(NewJob("noop"))
        [job] = await queue.reserve(1, owner="t", lease_s=30)
        await queue.fail(job, "vendor said no", retry_at=None)
    finally:
        await queue.close()
    status, body = await get(http, f"{base}/api/production/queue/heartbeat", headers=AUTH)
    assert status == 200
    assert body["status"] == {
        "status": "pass",
        "reasons": [],
        "checkedAt": body["status"]["checkedAt"],
    }
    assert body["queue"]["failed"] == 1


async def test_production_ready_refuses_embedded_sqlite(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(
        make_settings(OPSCTL_ENV="production", OPSCTL_API_TOKEN=TOKEN, OPSCTL_HOST="127.0.0.1")
    )
    status, body = await get(http, f"{base}/api/production/ready", headers=AUTH)
    assert status == 503
    assert body["checks"]["database"][0]["output"].startswith("the database is SQLite")
    assert body["checks"]["queue"][0]["output"].startswith("the queue is the embedded SQLite one")
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
    assert body["checks"]["keys"][0]["output"].startswith(
        "OPSCTL_MASTER_KEY_REF must be set when OPSCTL_ENV=production"
    )
    assert body["checks"]["database"][0]["status"] == "pass"
    assert body["checks"]["secrets"][0]["status"] == "pass"

    master = "ab" * 32  # 256 bits in hex, read through the env secret provider
    base = await serve(
        make_settings(**env, OPSCTL_MASTER_KEY_REF="env:TEST_MASTER_KEY", TEST_MASTER_KEY=master)
    )
    status, body = await get(http, f"{base}/api/production/ready", headers=AUTH)
    assert status == 200, body
    assert body["checks"]["database"][0]["backend"] == "postgresql"
    assert body["checks"]["queue"][0]["backend"] == "redis"
    assert body["checks"]["keys"][0]["status"] in ("pass", "warn")
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


def _ready(base: str) -> tuple[int, dict[str, Any]]:
    """``/api/production/ready`` with the operator token, from a real process."""
    request = urllib.request.Request(f"{base}/api/production/ready", headers=AUTH)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _check(body: dict[str, Any], name: str) -> dict[str, Any]:
    check = body["checks"][name]
    found: dict[str, Any] = check[0] if isinstance(check, list) else check
    return found


def test_two_web_daemons_with_different_master_keys_on_one_database(
    daemons: Callable[..., Daemon],
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """The second process cannot unwrap the active data key the first one made: its readiness
    fails on ``keys``, with the sentence that says why, and the first one stays ready."""

    def start(name: str, master: str) -> tuple[Daemon, str]:
        port = free_port()
        env = {
            "OPSCTL_ENV": "production",
            "OPSCTL_HOST": "127.0.0.1",
            "PORT": str(port),
            "OPSCTL_DATA_DIR": str(tmp_path / name),
            "DATABASE_URL": pg_url,
            "QUEUE_REDIS_URL": redis_url,
            "OPSCTL_REDIS_PREFIX": redis_prefix,
            "OPSCTL_API_TOKEN": TOKEN,
            "OPSCTL_MASTER_KEY_REF": "env:TEST_MASTER_KEY",
            "TEST_MASTER_KEY": master,
            "OPSCTL_LOG_FORMAT": "json",
        }
        daemon = daemons("daemon", "web", env=env, log_name=f"{name}.log")
        base = f"http://127.0.0.1:{port}"
        daemon.wait_http(f"{base}/api/health/live", timeout=30)
        return daemon, base

    first, first_base = start("first", "11" * 32)  # makes data key k1 under its master key
    status, body = _ready(first_base)
    assert _check(body, "keys")["status"] == "pass", body
    assert status == 200, body

    second, second_base = start("second", "22" * 32)
    status, body = _ready(second_base)
    assert status == 503, body
    keys = _check(body, "keys")
    output = keys["output"]
    assert keys["status"] == "fail"
    assert output.startswith("the active data key k1 was wrapped by another master key ("), output
    assert "this process's OPSCTL_MASTER_KEY_REF (env:TEST_MASTER_KEY), master key " in output
    assert output.endswith("cannot unwrap it; every process must share one master key")
    for other in ("database", "queue", "secrets"):
        assert _check(body, other)["status"] == "pass", body
    assert "22" * 32 not in json.dumps(body) and "11" * 32 not in json.dumps(body)
    assert "stored credentials are unavailable: data key k1 was wrapped by another" in (
        second.output
    )
    assert _ready(first_base)[0] == 200  # the first is not affected
    assert second.stop() == 0 and first.stop() == 0


async def test_overlapping_heartbeat_polls_share_one_read_of_the_queue(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    private_redis: PrivateRedis,
) -> None:
    """Many pollers at once (platform checks, gates, dashboards) cost one round of Redis calls,
    and each still gets an answer read after it was sent."""
    settings = make_settings(QUEUE_REDIS_URL=private_redis.url, OPSCTL_API_TOKEN=TOKEN)
    base = await serve(settings)
    await add_worker(settings)
    client = redis.Redis(port=private_redis.port)
    try:
        client.config_resetstat()
        answers = await asyncio.gather(
            *(get(http, f"{base}/api/production/queue/heartbeat") for _ in range(20))
        )
        assert [status for status, _ in answers] == [200] * 20
        assert {body["status"]["status"] for _, body in answers} == {"pass"}
        reads = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    finally:
        client.close()
    # Two scripts a read (stats, heartbeats): twenty reads would be forty calls.
    assert 2 <= reads < 20, reads
    await add_worker(settings, pid=4343)  # a read after the burst sees the state of now
    status, body = await get(http, f"{base}/api/production/queue/heartbeat", headers=AUTH)
    assert status == 200 and body["workers"]["alive"] == 2
