"""Each queue check passes, warns and fails for its own reason, on both backends."""

from __future__ import annotations

import asyncio
import time

from opsctl.health import snapshot_queue
from opsctl.queue import Heartbeat, NewJob, QueueBackend
from opsctl.queue.reader import read_queue_once
from opsctl.settings import Settings
from opsctl.verdict import CheckResult, heartbeat_body, queue_checks, worst
from tests._support import free_port
from tests.conftest import SettingsFactory


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


async def beat(queue: QueueBackend, pid: int, *, role: str = "worker", ttl_s: float = 15) -> None:
    await queue.beat(
        Heartbeat(
            id=f"test-host:{pid}",
            role=role,
            started_at=time.time(),
            in_flight=1,
            processed=7,
            version="9.9",
        ),
        ttl_s=ttl_s,
    )


async def test_no_worker_fails_then_a_live_worker_passes(
    queue: QueueBackend, queue_settings: Settings
) -> None:
    checks = by_name(
        queue_checks(await snapshot_queue(queue, queue_settings), drain_threshold_s=60)
    )
    assert checks["queue"].status == "pass"
    assert checks["workers"].status == "fail"
    assert checks["workers"].reason.startswith("no worker heartbeat is fresh")
    await beat(queue, 101, role="web")  # a web process is not a worker
    checks = by_name(
        queue_checks(await snapshot_queue(queue, queue_settings), drain_threshold_s=60)
    )
    assert checks["workers"].status == "fail"
    await beat(queue, 102)
    results = queue_checks(await snapshot_queue(queue, queue_settings), drain_threshold_s=60)
    assert by_name(results)["workers"].status == "pass"
    assert worst(r.status for r in results) == "pass"


async def test_stale_worker_warns_beside_a_live_one_and_fails_alone(
    queue: QueueBackend, queue_settings: Settings
) -> None:
    await beat(queue, 201, ttl_s=0.2)
    await asyncio.sleep(0.5)
    await beat(queue, 202)
    snapshot = await snapshot_queue(queue, queue_settings, ttl_s=0.3)
    workers = by_name(queue_checks(snapshot, drain_threshold_s=60))["workers"]
    assert workers.status == "warn", workers
    assert workers.reason == "1 worker(s) alive, 1 stale"
    await queue.remove_heartbeat("test-host:202")
    snapshot = await snapshot_queue(queue, queue_settings, ttl_s=0.3)
    workers = by_name(queue_checks(snapshot, drain_threshold_s=60))["workers"]
    assert workers.status == "fail"
    assert "1 stale, last seen" in workers.reason


async def test_waiting_job_older_than_threshold_means_not_draining(
    queue: QueueBackend, queue_settings: Settings
) -> None:
    await beat(queue, 301)
    await queue.enqueue(NewJob("noop"))
    await asyncio.sleep(0.3)
    snapshot = await snapshot_queue(queue, queue_settings)
    assert by_name(queue_checks(snapshot, drain_threshold_s=60))["draining"].status == "pass"
    draining = by_name(queue_checks(snapshot, drain_threshold_s=0.1))["draining"]
    assert draining.status == "fail"
    assert "the queue stopped draining" in draining.reason
    assert draining.observed is not None and draining.observed >= 0.25


async def test_dead_letters_warn(queue: QueueBackend, queue_settings: Settings) -> None:
    await beat(queue, 401)
    await queue.enqueue(NewJob("noop"))
    [job] = await queue.reserve(1, owner="test", lease_s=30)
    assert await queue.fail(job, "boom", retry_at=None) == "dead"
    results = queue_checks(await snapshot_queue(queue, queue_settings), drain_threshold_s=60)
    dead = by_name(results)["dead_letters"]
    assert dead.status == "warn" and dead.observed == 1
    assert worst(r.status for r in results) == "warn"


def test_unreachable_redis_fails_naming_the_address(make_settings: SettingsFactory) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    snapshot = read_queue_once(make_settings(QUEUE_REDIS_URL=url))
    assert snapshot.stats is None
    [only] = queue_checks(snapshot, drain_threshold_s=60)
    assert only.name == "queue" and only.status == "fail"
    assert f"cannot reach Redis at {url}" in only.reason


async def test_heartbeat_body_shape(queue: QueueBackend, queue_settings: Settings) -> None:
    await beat(queue, 501)
    snapshot = await snapshot_queue(queue, queue_settings)
    results = queue_checks(snapshot, drain_threshold_s=60)
    short = heartbeat_body(snapshot, results, detailed=False)
    assert set(short) == {"status"}
    assert short["status"]["status"] == "pass" and short["status"]["reasons"] == []
    full = heartbeat_body(snapshot, results, detailed=True)
    assert set(full["queue"]) == {
        "backend",
        "waiting",
        "delayed",
        "active",
        "failed",
        "oldestWaitingAgeSeconds",
        "completedLastMinute",
    }
    assert full["queue"]["backend"] == queue_settings.queue_backend
    assert full["workers"]["alive"] == 1 and full["workers"]["stale"] == 0
    [item] = full["workers"]["items"]
    assert item["id"] == "test-host:501" and item["inFlight"] == 1 and item["processed"] == 7
    assert 0 <= item["lastSeenSecondsAgo"] < 5
