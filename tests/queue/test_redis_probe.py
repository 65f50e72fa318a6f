"""The deploy gate's synchronous queue reader against real Redis: it must see exactly what the
asyncio backend sees, add jobs the backend runs, and turn every failure into a sentence."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis

from opsctl._record import replace
from opsctl.errors import QueueError, QueueUnavailable
from opsctl.queue._redis import RedisQueue
from opsctl.queue.base import Heartbeat, HeartbeatView, NewJob, QueueStats
from opsctl.queue.redis_probe import RedisProbe
from opsctl.settings import Settings
from opsctl.verdict import QueueSnapshot
from tests._support import PrivateRedis, free_port

SettingsFactory = Callable[..., Settings]
OWNER = "probe-test:1"
HINT = "check QUEUE_REDIS_URL and that Redis runs"


@pytest.fixture
def settings(make_settings: SettingsFactory, redis_url: str, redis_prefix: str) -> Settings:
    return make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix)


@pytest.fixture
async def rq(settings: Settings) -> AsyncIterator[RedisQueue]:
    queue = await RedisQueue.open(settings)
    yield queue
    await queue.close()


@pytest.fixture
def probe(settings: Settings) -> Iterator[RedisProbe]:
    with RedisProbe.open(settings) as opened:
        yield opened


def prefix_keys(redis_url: str, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
    finally:
        client.close()


def assert_same_heartbeats(seen: tuple[HeartbeatView, ...], expected: list[HeartbeatView]) -> None:
    """Equal but for the age, which moves between the two reads."""
    assert [v.heartbeat for v in seen] == [v.heartbeat for v in expected]
    assert [(v.last_seen, v.live) for v in seen] == [(v.last_seen, v.live) for v in expected]
    for ours, theirs in zip(seen, expected, strict=True):
        assert ours.age_s == pytest.approx(theirs.age_s, abs=0.5)


def without_age(stats: QueueStats | None) -> QueueStats:
    assert stats is not None
    return replace(stats, oldest_waiting_age_s=0.0)


# -- reading the queue ----------------------------------------------------------------------------


async def test_a_snapshot_agrees_with_the_asyncio_backend(
    rq: RedisQueue, probe: RedisProbe
) -> None:
    for n in range(6):
        await rq.enqueue(NewJob("ready", {"n": n}))
    await rq.enqueue(NewJob("later", delay_s=60))
    await rq.enqueue(NewJob("later", run_at=time.time() + 120))
    doomed_a, doomed_b, done, _running = await rq.reserve(4, owner=OWNER, lease_s=30)
    assert await rq.fail(doomed_a, "boom", retry_at=None) == "dead"
    assert await rq.fail(doomed_b, "bang", retry_at=None) == "dead"
    assert await rq.complete([(done, {"ok": True})]) == [True]
    await rq.beat(Heartbeat("host-a:1", "worker", time.time(), in_flight=1), ttl_s=30)
    await rq.beat(Heartbeat("host-b:2", "scheduler", time.time(), version="1.2"), ttl_s=30)
    await rq.beat(Heartbeat("host-c:3", "worker", time.time(), processed=9), ttl_s=0.001)
    await asyncio.sleep(0.02)  # host-c's key has lapsed: a stale worker

    snapshot = probe.snapshot(ttl_s=30)
    stats, beats = await rq.stats(), await rq.heartbeats(ttl_s=30)

    assert snapshot.backend == "redis" and snapshot.error is None
    assert snapshot.rtt_s is not None and 0 < snapshot.rtt_s < 1
    assert snapshot.stats is not None
    assert without_age(snapshot.stats) == without_age(stats)
    assert without_age(snapshot.stats) == QueueStats(
        backend="redis",
        waiting=2,
        delayed=2,
        active=1,
        failed=2,
        oldest_waiting_age_s=0.0,
        completed_last_minute=1,
    )
    assert snapshot.stats.oldest_waiting_age_s == pytest.approx(stats.oldest_waiting_age_s, abs=0.5)
    assert_same_heartbeats(snapshot.processes, beats)
    assert {v.heartbeat.id: (v.heartbeat.role, v.live) for v in snapshot.processes} == {
        "host-a:1": ("worker", True),
        "host-b:2": ("scheduler", True),
        "host-c:3": ("worker", False),
    }
    assert [v.heartbeat.id for v in snapshot.workers] == ["host-a:1", "host-c:3"]


async def test_liveness_follows_the_ttl_given_like_the_backend(
    rq: RedisQueue, probe: RedisProbe
) -> None:
    await rq.beat(Heartbeat("host-a:1", "worker", time.time()), ttl_s=30)
    await asyncio.sleep(0.05)
    for ttl_s in (30.0, 0.01):
        snapshot = probe.snapshot(ttl_s=ttl_s)
        assert_same_heartbeats(snapshot.processes, await rq.heartbeats(ttl_s=ttl_s))
        assert [v.live for v in snapshot.processes] == [ttl_s == 30.0]


async def test_a_bad_ttl_is_refused_by_both(rq: RedisQueue, probe: RedisProbe) -> None:
    for ttl_s in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(QueueError, match="ttl_s must be a positive number"):
            probe.snapshot(ttl_s=ttl_s)
        with pytest.raises(QueueError, match="ttl_s must be a positive number"):
            await rq.heartbeats(ttl_s=ttl_s)


def test_an_empty_queue_reads_as_zeros(probe: RedisProbe) -> None:
    snapshot = probe.snapshot()
    assert snapshot.error is None and snapshot.processes == ()
    assert snapshot.stats == QueueStats("redis", 0, 0, 0, 0, 0.0, 0)


async def test_each_queue_is_read_apart(settings: Settings, rq: RedisQueue) -> None:
    await rq.enqueue(NewJob("default-queue"))
    other = await RedisQueue.open(settings, queue="other")
    try:
        await other.enqueue_many([NewJob("x"), NewJob("y")])
        with RedisProbe.open(settings, queue="other") as probe:
            snapshot = probe.snapshot()
        assert snapshot.stats is not None and snapshot.stats.waiting == 2
        assert without_age(snapshot.stats) == without_age(await other.stats())
    finally:
        await other.close()


async def test_a_job_reads_the_same_in_every_state(rq: RedisQueue, probe: RedisProbe) -> None:
    ids = await rq.enqueue_many(
        [NewJob("a", {"n": 1}), NewJob("b", [1, "two"]), NewJob("c"), NewJob("d", "text")]
    )
    delayed = await rq.enqueue(NewJob("later", {"k": "v"}, delay_s=60, max_attempts=2))
    dead, done, active = await rq.reserve(3, owner=OWNER, lease_s=30)
    await rq.fail(dead, "it broke: ✗", retry_at=None)
    await rq.complete([(done, {"rows": [1, 2], "note": "ünïcode"})])
    deferred = await rq.enqueue(NewJob("deferred"))
    also_active, to_defer = await rq.reserve(2, owner=OWNER, lease_s=30)
    assert (also_active.id, to_defer.id) == (ids[3], deferred)
    assert await rq.defer(to_defer, run_at=time.time() + 60, reason="rate limited") == "deferred"

    for job_id in (*ids, delayed, deferred):
        ours, theirs = probe.get(job_id), await rq.get(job_id)
        assert ours is not None and ours == theirs
    statuses = {
        job_id: info.status
        for job_id in (dead.id, done.id, active.id, ids[3], delayed, deferred)
        if (info := probe.get(job_id)) is not None
    }
    assert statuses == {
        dead.id: "dead",
        done.id: "done",
        active.id: "active",
        ids[3]: "active",
        delayed: "delayed",
        deferred: "delayed",
    }
    dead_info, deferred_info = probe.get(dead.id), probe.get(deferred)
    assert dead_info is not None and dead_info.last_error == "it broke: ✗"
    assert deferred_info is not None and deferred_info.deferred_reason == "rate limited"


def test_an_unknown_job_is_none(probe: RedisProbe) -> None:
    assert probe.get("no-such-job") is None
    assert probe.get("") is None


# -- adding jobs ----------------------------------------------------------------------------------


async def test_a_job_the_probe_adds_is_run_by_the_backend(
    rq: RedisQueue, probe: RedisProbe
) -> None:
    payload = {"check": "canary", "nested": [1, {"a": None}], "text": "é\u2028"}
    job_id = probe.enqueue(NewJob("gate-canary", payload, job_id="canary-host-1-123"))
    assert job_id == "canary-host-1-123"
    info = probe.get(job_id)
    assert info is not None and info.status == "ready" and info.payload == payload

    (job,) = await rq.reserve(5, owner=OWNER, lease_s=30)
    assert (job.id, job.kind, job.payload, job.attempt) == (job_id, "gate-canary", payload, 1)
    assert await rq.complete([(job, {"pong": True})]) == [True]

    info = probe.get(job_id)
    assert info is not None
    assert (info.status, info.result, info.attempts) == ("done", {"pong": True}, 1)
    assert info.finished_at is not None and info.finished_at >= info.created_at
    assert info == await rq.get(job_id)
    snapshot = probe.snapshot()
    assert snapshot.stats is not None and snapshot.stats.completed_last_minute == 1


async def test_the_probe_enqueues_as_the_backend_does(rq: RedisQueue, probe: RedisProbe) -> None:
    first = probe.enqueue(NewJob("once", idempotency_key="deploy-42"))
    assert probe.enqueue(NewJob("once", idempotency_key="deploy-42")) == first
    assert await rq.enqueue(NewJob("once", idempotency_key="deploy-42")) == first
    assert probe.enqueue(NewJob("again", job_id=first)) == first  # an existing id: no new job

    later = probe.enqueue(NewJob("later", delay_s=30, max_attempts=4))
    info = probe.get(later)
    assert info is not None and (info.status, info.max_attempts) == ("delayed", 4)
    assert info.run_at is not None and info.run_at == pytest.approx(info.created_at + 30, abs=0.5)

    stats = await rq.stats()
    assert (stats.waiting, stats.delayed) == (1, 1)
    (job,) = await rq.reserve(5, owner=OWNER, lease_s=30)
    assert job.id == first and job.kind == "once"


@pytest.mark.parametrize(
    ("job", "complaint"),
    [
        (NewJob(""), "needs a kind"),
        (NewJob("x", payload={1, 2}), "not JSON-serialisable"),
        (NewJob("x", payload={"v": float("nan")}), "not JSON-serialisable"),
        (NewJob("x", payload=float("inf")), "not JSON-serialisable"),
        (NewJob("x", delay_s=1, run_at=time.time()), "both delay_s and run_at"),
        (NewJob("x", max_attempts=0), "max_attempts"),
        (NewJob("x", job_id=""), "empty job_id"),
        (NewJob("x", job_id="\ud800"), "not valid Unicode"),
    ],
    ids=[
        "no-kind",
        "set",
        "nan",
        "inf",
        "delay-and-run-at",
        "no-attempts",
        "empty-id",
        "surrogate",
    ],
)
def test_a_bad_job_is_refused_and_adds_nothing(
    probe: RedisProbe, redis_url: str, redis_prefix: str, job: NewJob, complaint: str
) -> None:
    probe.enqueue(NewJob("kept"))
    before = prefix_keys(redis_url, redis_prefix)
    with pytest.raises(QueueError, match=complaint) as caught:
        probe.enqueue(job)
    assert not isinstance(caught.value, QueueUnavailable)
    assert prefix_keys(redis_url, redis_prefix) == before
    snapshot = probe.snapshot()
    assert snapshot.stats is not None and snapshot.stats.waiting == 1


# -- failures -------------------------------------------------------------------------------------


def test_opening_a_closed_port_names_the_address_without_the_password(
    make_settings: SettingsFactory,
) -> None:
    port = free_port()
    settings = make_settings(QUEUE_REDIS_URL=f"redis://gate:hunter2@127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(QueueUnavailable) as caught:
        RedisProbe.open(settings)
    assert time.monotonic() - started < 3
    assert caught.value.message == (
        f"cannot reach Redis at redis://gate:***@127.0.0.1:{port}/0: Connection refused"
    )
    assert caught.value.hint == HINT
    assert "hunter2" not in str(caught.value)


def test_a_password_given_in_the_query_is_never_shown(make_settings: SettingsFactory) -> None:
    settings = make_settings(QUEUE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0?password=hunter2")
    with pytest.raises(QueueUnavailable) as caught:
        RedisProbe.open(settings)
    assert "hunter2" not in str(caught.value)


def test_opening_without_a_url_says_so(make_settings: SettingsFactory) -> None:
    with pytest.raises(QueueUnavailable, match="QUEUE_REDIS_URL is not set"):
        RedisProbe.open(make_settings())


def test_a_snapshot_after_redis_died_records_the_failure(
    private_redis: PrivateRedis, make_settings: SettingsFactory
) -> None:
    settings = make_settings(QUEUE_REDIS_URL=private_redis.url, OPSCTL_REDIS_PREFIX="probe")
    with RedisProbe.open(settings) as probe:
        job_id = probe.enqueue(NewJob("before"))
        healthy = probe.snapshot()
        assert healthy.error is None and healthy.stats is not None
        assert healthy.stats.waiting == 1

        private_redis.kill()
        started = time.monotonic()
        snapshot = probe.snapshot()
        assert time.monotonic() - started < 1
        assert isinstance(snapshot, QueueSnapshot) and snapshot.backend == "redis"
        assert snapshot.stats is None and snapshot.processes == () and snapshot.rtt_s is None
        assert snapshot.error is not None
        assert snapshot.error.startswith(f"cannot reach Redis at {private_redis.url}: ")

        again = probe.snapshot()  # the connection is broken for good: still recorded, not raised
        assert again.stats is None and again.error is not None
        assert private_redis.url in again.error
        with pytest.raises(QueueUnavailable, match=f"127.0.0.1:{private_redis.port}"):
            probe.get(job_id)
        with pytest.raises(QueueUnavailable, match=f"127.0.0.1:{private_redis.port}"):
            probe.enqueue(NewJob("after"))


@pytest.fixture
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("locked"), "--requirepass", "s3cret")
    server.start()
    yield server
    server.kill()


def test_a_wrong_password_is_refused_at_open(
    locked_redis: PrivateRedis, make_settings: SettingsFactory
) -> None:
    url = f"redis://:wrong-one@127.0.0.1:{locked_redis.port}/0"
    with pytest.raises(QueueUnavailable) as caught:
        RedisProbe.open(make_settings(QUEUE_REDIS_URL=url))
    assert caught.value.message.startswith(
        f"Redis at redis://:***@127.0.0.1:{locked_redis.port}/0 rejected the credentials: WRONGPASS"
    )
    assert "wrong-one" not in str(caught.value)


def test_a_missing_password_is_recorded_as_rejected(
    locked_redis: PrivateRedis, make_settings: SettingsFactory
) -> None:
    settings = make_settings(QUEUE_REDIS_URL=locked_redis.url, OPSCTL_REDIS_PREFIX="probe")
    with RedisProbe.open(settings) as probe:  # no password: nothing is sent until the first read
        snapshot = probe.snapshot()
        assert snapshot.stats is None
        rejected = f"Redis at {locked_redis.url} rejected the credentials"
        assert snapshot.error == f"{rejected}: NOAUTH Authentication required."
        with pytest.raises(QueueError, match="rejected the credentials") as caught:
            probe.get("any")
        assert not isinstance(caught.value, QueueUnavailable)  # Redis answered: not unreachable
        # Redis refuses a long command from an unauthenticated client before it reads it.
        with pytest.raises(QueueError, match=f"^Redis at {locked_redis.url} "):
            probe.enqueue(NewJob("x"))


def test_the_right_password_reads_the_queue(
    locked_redis: PrivateRedis, make_settings: SettingsFactory
) -> None:
    url = f"redis://:s3cret@127.0.0.1:{locked_redis.port}/3"
    with RedisProbe.open(make_settings(QUEUE_REDIS_URL=url, OPSCTL_REDIS_PREFIX="p")) as probe:
        assert probe.where == f"redis://:***@127.0.0.1:{locked_redis.port}/3"
        job_id = probe.enqueue(NewJob("x"))
        info = probe.get(job_id)
        assert info is not None and info.kind == "x"
        snapshot = probe.snapshot()
        assert snapshot.stats is not None and snapshot.stats.waiting == 1
    client = redis.Redis(port=locked_redis.port, password="s3cret", db=3)
    try:
        assert client.exists(f"p:job:{job_id}") == 1
    finally:
        client.close()


async def test_an_id_that_is_not_unicode_is_a_queue_error_in_both(
    rq: RedisQueue, probe: RedisProbe
) -> None:
    with pytest.raises(QueueError, match="not valid Unicode"):
        await rq.get("\ud800")
    with pytest.raises(QueueError):
        probe.get("\ud800")
