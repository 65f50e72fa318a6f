"""The gate's synchronous queue reader against real Redis: it must see exactly what the asyncio
backend sees, add jobs the backend runs, verify TLS, and turn every failure into a sentence."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from opsctl.errors import QueueError, QueueUnavailable
from opsctl.gate.reader import RedisReader, read_queue_once
from opsctl.queue._redis import RedisQueue
from opsctl.queue.base import Heartbeat, NewJob, QueueStats
from opsctl.settings import Settings
from tests._support import PrivateRedis, free_port, write_self_signed

SettingsFactory = Callable[..., Settings]
OWNER = "reader-test:1"


@pytest.fixture
def settings(make_settings: SettingsFactory, redis_url: str, redis_prefix: str) -> Settings:
    return make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix)


@pytest.fixture
async def rq(settings: Settings) -> AsyncIterator[RedisQueue]:
    queue = await RedisQueue.open(settings)
    yield queue
    await queue.close()


@pytest.fixture
def reader(settings: Settings) -> Iterator[RedisReader]:
    with RedisReader.open(settings) as opened:
        yield opened


def without_ages(stats: QueueStats | None) -> QueueStats:
    """The stats with every age zeroed: ages move between two reads."""
    assert stats is not None
    ages = {f.name: 0.0 for f in dataclasses.fields(stats) if "age" in f.name}
    return dataclasses.replace(stats, **ages)


async def test_a_snapshot_agrees_with_the_asyncio_backend(
    rq: RedisQueue, reader: RedisReader
) -> None:
    for n in range(6):
        await rq.enqueue(NewJob("ready", {"n": n}))
    await rq.enqueue(NewJob("later", delay_s=60))
    doomed, done, _running = await rq.reserve(3, owner=OWNER, lease_s=30)
    assert await rq.fail(doomed, "boom", retry_at=None) == "dead"
    assert await rq.complete([(done, {"ok": True})]) == [True]
    await rq.beat(Heartbeat("host-a:1", "worker", time.time(), in_flight=1), ttl_s=30)
    await rq.beat(Heartbeat("host-b:2", "scheduler", time.time(), version="1.2"), ttl_s=30)
    await rq.beat(Heartbeat("host-c:3", "worker", time.time(), processed=9), ttl_s=0.001)
    await asyncio.sleep(0.02)  # host-c's key has lapsed: a stale worker

    snapshot = reader.snapshot(ttl_s=30)
    stats, beats = await rq.stats(), await rq.heartbeats(ttl_s=30)
    assert snapshot.backend == "redis" and snapshot.error is None
    assert snapshot.rtt_s is not None and 0 < snapshot.rtt_s < 1
    assert without_ages(snapshot.stats) == without_ages(stats)
    assert snapshot.stats is not None
    assert (snapshot.stats.waiting, snapshot.stats.delayed, snapshot.stats.active) == (3, 1, 1)
    assert (snapshot.stats.failed, snapshot.stats.completed_last_minute) == (1, 1)
    assert [v.heartbeat for v in snapshot.processes] == [v.heartbeat for v in beats]
    assert {v.heartbeat.id: v.live for v in snapshot.processes} == {
        "host-a:1": True,
        "host-b:2": True,
        "host-c:3": False,
    }


async def test_a_bad_ttl_is_refused(reader: RedisReader) -> None:
    for ttl_s in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(QueueError, match="ttl_s must be a positive number"):
            reader.snapshot(ttl_s=ttl_s)


async def test_a_job_the_reader_adds_is_run_by_the_backend_and_reads_the_same(
    rq: RedisQueue, reader: RedisReader
) -> None:
    payload = {"check": "canary", "nested": [1, {"a": None}], "text": "é\u2028"}
    job_id = reader.enqueue(NewJob("gate-canary", payload, job_id="canary-host-1-123"))
    assert job_id == "canary-host-1-123"
    assert reader.enqueue(NewJob("again", job_id=job_id)) == job_id  # an existing id: no new job
    (job,) = await rq.reserve(5, owner=OWNER, lease_s=30)
    assert (job.id, job.kind, job.payload) == (job_id, "gate-canary", payload)
    assert await rq.complete([(job, {"pong": True})]) == [True]
    info = reader.get(job_id)
    assert info is not None and (info.status, info.result) == ("done", {"pong": True})
    assert info == await rq.get(job_id)
    assert reader.get("no-such-job") is None
    with pytest.raises(QueueError):
        reader.get("\ud800")


def test_a_bad_job_is_refused_and_adds_nothing(reader: RedisReader) -> None:
    for job, complaint in [
        (NewJob(""), "needs a kind"),
        (NewJob("x", payload={"v": float("nan")}), "not JSON-serialisable"),
        (NewJob("x", job_id="\ud800"), "not valid Unicode"),
    ]:
        with pytest.raises(QueueError, match=complaint):
            reader.enqueue(job)
    snapshot = reader.snapshot()
    assert snapshot.stats is not None and snapshot.stats.waiting == 0


def test_an_unreachable_redis_is_recorded_naming_it_without_the_password(
    make_settings: SettingsFactory,
) -> None:
    port = free_port()
    for url in (
        f"redis://gate:hunter2@127.0.0.1:{port}/0",
        f"redis://127.0.0.1:{port}/0?password=hunter2",
    ):
        started = time.monotonic()
        snapshot = read_queue_once(make_settings(QUEUE_REDIS_URL=url))
        assert time.monotonic() - started < 3
        assert snapshot.stats is None and snapshot.error is not None
        assert f"127.0.0.1:{port}" in snapshot.error and "Connection refused" in snapshot.error
        assert "hunter2" not in snapshot.error


def test_a_redis_that_died_is_recorded_then_raised_for_the_canary(
    private_redis: PrivateRedis, make_settings: SettingsFactory
) -> None:
    settings = make_settings(QUEUE_REDIS_URL=private_redis.url, OPSCTL_REDIS_PREFIX="reader")
    with RedisReader.open(settings) as reader:
        job_id = reader.enqueue(NewJob("before"))
        healthy = reader.snapshot()
        assert healthy.stats is not None and healthy.stats.waiting == 1
        private_redis.kill()
        snapshot = reader.snapshot()
        assert snapshot.stats is None and snapshot.error is not None
        assert snapshot.error.startswith(f"cannot reach Redis at {private_redis.url}: ")
        with pytest.raises(QueueUnavailable, match=f"127.0.0.1:{private_redis.port}"):
            reader.get(job_id)


@pytest.fixture
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("locked"), "--requirepass", "s3cret")
    server.start()
    yield server
    server.kill()


def test_passwords(locked_redis: PrivateRedis, make_settings: SettingsFactory) -> None:
    wrong = f"redis://:wrong-one@127.0.0.1:{locked_redis.port}/0"
    snapshot = read_queue_once(make_settings(QUEUE_REDIS_URL=wrong))
    assert snapshot.error is not None and "rejected the credentials" in snapshot.error
    assert "wrong-one" not in snapshot.error
    missing = read_queue_once(make_settings(QUEUE_REDIS_URL=locked_redis.url))
    assert missing.error is not None and "rejected the credentials" in missing.error
    right = f"redis://:s3cret@127.0.0.1:{locked_redis.port}/3"
    with RedisReader.open(make_settings(QUEUE_REDIS_URL=right, OPSCTL_REDIS_PREFIX="p")) as reader:
        assert reader.where == f"redis://:***@127.0.0.1:{locked_redis.port}/3"
        job_id = reader.enqueue(NewJob("x"))
    client = redis.Redis(port=locked_redis.port, password="s3cret", db=3)
    try:
        assert client.exists(f"p:job:{job_id}") == 1
    finally:
        client.close()


# -- TLS: the certificate and the host name are verified unless the URL says otherwise ------


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A TLS-only Redis whose self-signed certificate names ``localhost`` alone."""
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = write_self_signed(workdir)
    server = PrivateRedis(workdir)
    server.args = (
        "--port", "0", "--tls-port", str(server.port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    server.start()
    yield server.port, cert
    server.kill()


def _snapshot_error(make_settings: SettingsFactory, url: str) -> str | None:
    return read_queue_once(make_settings(QUEUE_REDIS_URL=url)).error


def test_tls_refuses_an_untrusted_certificate(
    tls_redis: tuple[int, Path], make_settings: SettingsFactory
) -> None:
    port, _ = tls_redis
    error = _snapshot_error(make_settings, f"rediss://localhost:{port}/0")
    assert error is not None and "not trusted" in error and "self-signed" in error


def test_tls_checks_the_host_name_by_default(
    tls_redis: tuple[int, Path], make_settings: SettingsFactory
) -> None:
    port, cert = tls_redis
    trusted = f"?ssl_ca_certs={cert}"
    assert _snapshot_error(make_settings, f"rediss://localhost:{port}/0{trusted}") is None
    # The certificate names localhost, not 127.0.0.1: refused unless the URL opts out.
    mismatch = _snapshot_error(make_settings, f"rediss://127.0.0.1:{port}/0{trusted}")
    assert mismatch is not None and "not trusted" in mismatch
    assert "mismatch" in mismatch.lower() or "ip address" in mismatch.lower()
    opted_out = f"rediss://127.0.0.1:{port}/0{trusted}&ssl_check_hostname=false"
    assert _snapshot_error(make_settings, opted_out) is None
    assert _snapshot_error(make_settings, f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none") is None


async def test_the_daemons_client_verifies_tls_the_same_way(
    tls_redis: tuple[int, Path], make_settings: SettingsFactory
) -> None:
    port, cert = tls_redis
    with pytest.raises(QueueUnavailable, match="not trusted"):
        await RedisQueue.open(
            make_settings(QUEUE_REDIS_URL=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}")
        )
    queue = await RedisQueue.open(
        make_settings(QUEUE_REDIS_URL=f"rediss://localhost:{port}/0?ssl_ca_certs={cert}")
    )
    await queue.close()
