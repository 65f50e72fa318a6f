"""The Redis backend beyond the contract: addresses in errors, the server's clock, the key layout,
a Redis restart, wake-ups, and several real processes sharing one queue."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from opsctl.constants import IDEMPOTENCY_TTL_S, QUEUE_KEY, RESULT_TTL_S
from opsctl.errors import QueueUnavailable
from opsctl.queue._redis import RedisQueue
from opsctl.queue.base import Heartbeat, NewJob
from opsctl.settings import Settings
from tests._support import PrivateRedis, clean_env, free_port

SettingsFactory = Callable[..., Settings]
OWNER = "test:1"


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look at the keys the backend wrote."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def rq(
    make_settings: SettingsFactory, redis_url: str, redis_prefix: str
) -> AsyncIterator[RedisQueue]:
    queue = await RedisQueue.open(
        make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix)
    )
    yield queue
    await queue.close()


async def server_time(client: aioredis.Redis) -> float:
    seconds, micros = await client.time()
    return float(seconds) + micros / 1_000_000


# -- reaching Redis -------------------------------------------------------------------------------


async def test_unreachable_redis_names_the_address_within_seconds(
    make_settings: SettingsFactory,
) -> None:
    port = free_port()
    settings = make_settings(QUEUE_REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(QueueUnavailable) as caught:
        await RedisQueue.open(settings)
    assert time.monotonic() - started < 8
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "hunter2" not in message
    assert "refused" in message.lower()


async def test_a_client_passed_in_stays_the_callers(
    make_settings: SettingsFactory, redis_url: str, redis_prefix: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    settings = make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix)
    queue = await RedisQueue.open(settings, client=client)
    await queue.enqueue(NewJob("x"))
    await queue.close()
    await queue.close()
    assert await client.ping()
    await client.aclose()


async def test_redis_restart_is_reported_then_survived(
    private_redis: PrivateRedis, make_settings: SettingsFactory
) -> None:
    settings = make_settings(QUEUE_REDIS_URL=private_redis.url, OPSCTL_REDIS_PREFIX="restart")
    queue = await RedisQueue.open(settings)
    try:
        await queue.enqueue(NewJob("before"))
        private_redis.stop()
        started = time.monotonic()
        with pytest.raises(QueueUnavailable, match=f"127.0.0.1:{private_redis.port}"):
            await queue.stats()
        with pytest.raises(QueueUnavailable):
            await queue.reserve(1, owner=OWNER, lease_s=30)
        assert time.monotonic() - started < 5

        private_redis.start()  # empty, and its script cache is empty too
        job_id = await queue.enqueue(NewJob("after"))
        jobs = await queue.reserve(10, owner=OWNER, lease_s=30)
        assert [j.id for j in jobs] == [job_id]
        assert await queue.complete([(jobs[0], "ok")]) == [True]
    finally:
        await queue.close()


# -- the server's clock ---------------------------------------------------------------------------


async def test_timestamps_come_from_the_redis_server_clock(
    rq: RedisQueue, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)  # this host runs an hour fast

    before = await server_time(raw)
    job_id = await rq.enqueue(NewJob("clock"))
    (job,) = await rq.reserve(1, owner=OWNER, lease_s=30)
    after = await server_time(raw)
    info = await rq.get(job_id)
    assert info is not None and info.started_at is not None
    assert before <= info.created_at <= info.started_at <= after
    assert before + 30 <= job.lease_until <= after + 30

    # Absolute times given on the skewed clock are kept relative to now, on the server's clock.
    later = await rq.enqueue(NewJob("later", run_at=time.time() + 0.2))
    assert await rq.fail(job, "boom", retry_at=time.time() + 0.2) == "retry"
    now = await server_time(raw)
    for waiting in (later, job_id):
        info = await rq.get(waiting)
        assert info is not None and info.run_at == pytest.approx(now + 0.2, abs=0.1)
    assert await rq.promote_due() == 0
    await asyncio.sleep(0.3)
    assert await rq.promote_due() == 2

    await rq.beat(Heartbeat("host:1", "worker", started_at=time.time()), ttl_s=5)
    (view,) = await rq.heartbeats(ttl_s=5)
    assert view.live
    assert view.last_seen == pytest.approx(await server_time(raw), abs=1.0)


# -- keys -----------------------------------------------------------------------------------------


async def test_every_key_is_under_the_prefix_with_the_right_ttl(
    private_redis: PrivateRedis, make_settings: SettingsFactory
) -> None:
    settings = make_settings(QUEUE_REDIS_URL=private_redis.url, OPSCTL_REDIS_PREFIX="acme-prod")
    queue = await RedisQueue.open(settings)
    raw = aioredis.Redis(port=private_redis.port)
    try:
        done_id, dead_id, _ = await queue.enqueue_many(
            [NewJob("a"), NewJob("b"), NewJob("c", idempotency_key="order-1")]
        )
        await queue.enqueue(NewJob("later", delay_s=60))
        done, dead, running = await queue.reserve(3, owner=OWNER, lease_s=30)
        await queue.complete([(done, {"ok": True})])
        await queue.fail(dead, "no", retry_at=None)
        await queue.renew([running], lease_s=30)
        await queue.promote_due()
        await queue.requeue_expired()
        await queue.stats()
        await queue.dead()
        await queue.beat(Heartbeat("host-a:1", "worker", time.time()), ttl_s=15)
        await queue.beat(Heartbeat("host-b:2", "worker", time.time()), ttl_s=15)
        await queue.heartbeats(ttl_s=15)

        keys = private_redis.keys()
        assert keys and all(key.startswith("acme-prod:") for key in keys), keys
        for expected in (
            "acme-prod:q:default:delayed",
            "acme-prod:q:default:active",
            "acme-prod:q:default:dead",
            "acme-prod:idem:order-1",
            "acme-prod:hb:host-a:1",
            "acme-prod:hb:host-b:2",
            "acme-prod:hb:index",
            f"acme-prod:job:{done_id}",
        ):
            assert expected in keys
        assert any(key.startswith("acme-prod:q:default:done:") for key in keys)

        assert RESULT_TTL_S - 10 < await raw.ttl(f"acme-prod:job:{done_id}") <= RESULT_TTL_S
        assert await raw.ttl(f"acme-prod:job:{dead_id}") == -1  # kept until purged
        assert IDEMPOTENCY_TTL_S - 10 < await raw.ttl("acme-prod:idem:order-1") <= IDEMPOTENCY_TTL_S
        assert 0 < await raw.pttl("acme-prod:hb:host-a:1") <= 15_000
        counter = next(k for k in keys if k.startswith("acme-prod:q:default:done:"))
        assert 0 < await raw.ttl(counter) <= 120
    finally:
        await raw.aclose()
        await queue.close()


# -- waking blocked workers -----------------------------------------------------------------------


async def test_forgetting_never_touches_the_shared_heartbeat_keys(
    rq: RedisQueue, raw: aioredis.Redis, redis_prefix: str
) -> None:
    index, last = f"{redis_prefix}:hb:index", f"{redis_prefix}:hb:last"
    await rq.beat(Heartbeat("host:1", "worker", time.time()), ttl_s=30)
    # Even planted in the index by hand, the names of the shared keys are never processes.
    await raw.zadd(index, {"index": 1.0, "last": 1.0})
    await raw.hset(last, mapping={"index": "{}", "last": "{}"})
    assert await rq.forget_heartbeats(["index", "last"]) == []
    assert await raw.type(index) == b"zset" and await raw.type(last) == b"hash"
    assert await raw.zscore(index, "host:1") is not None
    assert await rq.forget_heartbeats(["host:1"]) == ["host:1"]
    assert await raw.exists(f"{redis_prefix}:hb:host:1") == 0
    assert await raw.zscore(index, "host:1") is None and not await raw.hexists(last, "host:1")


async def test_wake_list_stays_bounded_and_is_cleared_when_drained(
    rq: RedisQueue, raw: aioredis.Redis, redis_prefix: str
) -> None:
    wake = QUEUE_KEY.format(prefix=redis_prefix, queue=rq.queue, part="wake")
    for i in range(150):
        await rq.enqueue(NewJob("w", i))
    assert 0 < await raw.llen(wake) <= 100
    assert len(await rq.reserve(200, owner=OWNER, lease_s=30)) == 150
    assert await raw.exists(wake) == 0


async def test_promote_release_and_requeue_wake_a_blocked_worker(
    make_settings: SettingsFactory, redis_url: str, redis_prefix: str
) -> None:
    settings = make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix)
    worker, other = await RedisQueue.open(settings), await RedisQueue.open(settings)
    try:

        async def wakes_for(action: Callable[[], object]) -> str:
            waiting = asyncio.create_task(worker.reserve(1, owner="w", lease_s=30, wait_s=5.0))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            result = action()
            if asyncio.iscoroutine(result):
                await result
            (job,) = await asyncio.wait_for(waiting, timeout=5.0)
            assert time.monotonic() - started < 0.5
            return job.id

        delayed = await other.enqueue(NewJob("later", delay_s=0.05))
        await asyncio.sleep(0.1)
        assert await wakes_for(other.promote_due) == delayed

        await other.enqueue(NewJob("held"))
        (held,) = await other.reserve(1, owner="o", lease_s=0.05)
        assert await wakes_for(lambda: other.release([held])) == held.id

        await other.enqueue(NewJob("lapsed"))
        (lapsed,) = await other.reserve(1, owner="o", lease_s=0.05)
        await asyncio.sleep(0.1)
        assert await wakes_for(other.requeue_expired) == lapsed.id
    finally:
        await worker.close()
        await other.close()


# -- several processes ----------------------------------------------------------------------------

WORKER_SCRIPT = """
import asyncio, json, os, sys

import redis.asyncio as aioredis

from opsctl.queue._redis import RedisQueue
from opsctl.settings import load_settings


async def main() -> None:
    settings = load_settings(os.environ)
    queue = await RedisQueue.open(settings)
    stop = aioredis.Redis.from_url(settings.queue_redis_url)
    name = f"proc:{os.getpid()}"
    done = []
    print("ready", flush=True)
    while True:
        jobs = await queue.reserve(10, owner=name, lease_s=30, wait_s=0.2)
        if not jobs:
            if await stop.exists(sys.argv[1]):
                break
            continue
        await asyncio.sleep(0)
        flags = await queue.complete([(job, {"by": name}) for job in jobs])
        done.extend(job.id for job, ok in zip(jobs, flags) if ok)
    await stop.aclose()
    await queue.close()
    print(json.dumps({"name": name, "done": done}), flush=True)


asyncio.run(main())
"""


async def test_three_processes_complete_every_job_exactly_once(
    rq: RedisQueue, raw: aioredis.Redis, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    stop_key = f"{redis_prefix}:test-stop"
    env = clean_env(
        {
            "QUEUE_REDIS_URL": redis_url,
            "OPSCTL_REDIS_PREFIX": redis_prefix,
            "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        }
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            stop_key,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line.strip() == b"ready"

        ids: list[str] = []
        for start in range(0, 1000, 100):
            ids += await rq.enqueue_many([NewJob("multi", i) for i in range(start, start + 100)])
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 60
        while (stats := await rq.stats()).waiting or stats.active:
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.05)
        await raw.set(stop_key, "1")

        reports = []
        for proc in procs:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
            assert proc.returncode == 0
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    completed = [job_id for report in reports for job_id in report["done"]]
    assert len(completed) == 1000
    assert set(completed) == set(ids)
    assert sum(1 for report in reports if report["done"]) >= 2, [len(r["done"]) for r in reports]
    for job_id in ids[::50]:
        info = await rq.get(job_id)
        assert info is not None and info.status == "done"
        assert info.result == {"by": next(r["name"] for r in reports if job_id in r["done"])}
    assert (await rq.stats()).completed_last_minute == 1000
