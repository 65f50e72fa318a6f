"""Each queue check passes, warns and fails for its own reason, on both backends.

The status answers one question, must a deploy halt: ``fail`` exactly then, ``warn`` only for a
stale worker beside live ones for two heartbeat TTLs, and never for what only an operator
clears (dead letters, a process that died long ago).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from opsctl.gate.reader import read_queue_once
from opsctl.health import snapshot_queue
from opsctl.queue import Heartbeat, NewJob, QueueBackend
from opsctl.queue.base import HeartbeatView, QueueStats
from opsctl.settings import Settings
from opsctl.verdict import (
    CheckResult,
    QueueSnapshot,
    heartbeat_body,
    heartbeat_checks,
    queue_checks,
    worst,
)
from tests._support import free_port
from tests.conftest import SettingsFactory

NAMES = ["queue", "workers", "draining", "promotion", "dead_letters"]


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


async def poll_stats(
    queue: QueueBackend, until: Callable[[QueueStats], bool], deadline_s: float = 10
) -> QueueStats:
    """The queue's stats once ``until`` holds for them; fails past the deadline."""
    give_up = time.monotonic() + deadline_s
    while True:
        stats = await queue.stats()
        if until(stats):
            return stats
        assert time.monotonic() < give_up, f"not within {deadline_s} s: {stats}"
        await asyncio.sleep(0.02)


# -- snapshots made by hand: the verdict is a pure function of them ----------------------------

STATS = QueueStats("redis", 0, 0, 0, 0, 0.0, 0)


def view(pid: int, *, live: bool, age_s: float, role: str = "worker") -> HeartbeatView:
    now = time.time()
    return HeartbeatView(Heartbeat(f"h:{pid}", role, now - 600), now - age_s, age_s, live)


def snap(
    *processes: HeartbeatView,
    stats: QueueStats = STATS,
    backend: Literal["redis", "sqlite"] = "redis",
) -> QueueSnapshot:
    return QueueSnapshot(backend, replace(stats, backend=backend), processes, 0.001)


def test_the_checks_in_order_and_a_healthy_queue_passes() -> None:
    results = queue_checks(snap(view(1, live=True, age_s=1)), drain_threshold_s=60)
    assert [r.name for r in results] == NAMES
    assert [r.status for r in results] == ["pass"] * 5
    assert by_name(results)["queue"].reason == "redis queue reachable"


def test_a_stale_worker_beside_a_live_one_warns_for_two_ttls_then_only_shows() -> None:
    live = view(1, live=True, age_s=1)
    for age, status in [(16, "warn"), (30, "warn"), (30.5, "pass"), (3000, "pass")]:
        results = queue_checks(snap(live, view(2, live=False, age_s=age)), drain_threshold_s=60)
        workers = by_name(results)["workers"]
        assert (workers.status, worst(r.status for r in results)) == (status, status), age
        assert workers.details == {"alive": 1, "stale": 1}
    assert workers.reason == (
        "1 worker(s) alive; 1 stale listed until forgotten (opsctl workers forget --stale)"
    )
    warn = by_name(queue_checks(snap(live, view(2, live=False, age_s=20)), drain_threshold_s=60))
    assert warn["workers"].reason == (
        "1 worker(s) alive, 1 stale (last beat 20 s ago; this clears 30 s after it)"
    )
    # The window follows the TTL the snapshot was read with.
    short = queue_checks(snap(live, view(2, live=False, age_s=3)), drain_threshold_s=60, ttl_s=1)
    assert by_name(short)["workers"].status == "pass"


def test_no_live_worker_fails_however_recent_the_stale_one() -> None:
    for processes in [
        (),
        (view(2, live=False, age_s=16),),
        (view(3, live=True, age_s=1, role="web"),),
    ]:
        workers = by_name(queue_checks(snap(*processes), drain_threshold_s=60))["workers"]
        assert workers.status == "fail"
        assert workers.reason.startswith("no worker heartbeat is fresh")
        assert workers.reason.endswith("; start a worker: opsctl daemon worker")
    workers = by_name(queue_checks(snap(view(2, live=False, age_s=16)), drain_threshold_s=60))[
        "workers"
    ]
    assert "(1 stale, last seen 16 s ago)" in workers.reason


def test_dead_letters_never_change_the_status() -> None:
    stats = replace(STATS, failed=3)
    results = queue_checks(snap(view(1, live=True, age_s=1), stats=stats), drain_threshold_s=60)
    dead = by_name(results)["dead_letters"]
    assert (dead.status, dead.observed, dead.unit) == ("pass", 3, "jobs")
    assert dead.reason == "3 dead-lettered job(s); see opsctl queue dead"
    assert worst(r.status for r in results) == "pass"


def test_promotion_fails_only_past_the_drain_threshold() -> None:
    live = view(1, live=True, age_s=1)
    due = replace(STATS, delayed=5, delayed_due=3, oldest_due_age_s=59.0)
    promotion = by_name(queue_checks(snap(live, stats=due), drain_threshold_s=60))["promotion"]
    assert (promotion.status, promotion.observed, promotion.unit) == ("pass", 59.0, "s")
    assert promotion.reason == "3 delayed job(s) due, the oldest 59.0 s overdue"
    assert promotion.details == {"delayed": 5, "due": 3}
    late = replace(due, oldest_due_age_s=61.4)
    promotion = by_name(queue_checks(snap(live, stats=late), drain_threshold_s=60))["promotion"]
    assert (promotion.status, promotion.observed) == ("fail", 61.4)
    assert promotion.reason == (
        "3 delayed job(s) due and not promoted, the oldest 61 s overdue:"
        " is a timers daemon running? opsctl daemon timers"
    )
    idle = by_name(queue_checks(snap(live, stats=replace(STATS, delayed=2)), drain_threshold_s=60))
    assert (idle["promotion"].status, idle["promotion"].reason) == ("pass", "2 delayed, none due")


def test_production_fails_the_embedded_queue_but_not_redis() -> None:
    live = view(1, live=True, age_s=1)
    for backend, production, status in [
        ("sqlite", True, "fail"),
        ("sqlite", False, "pass"),
        ("redis", True, "pass"),
    ]:
        results = queue_checks(
            snap(live, backend=backend), drain_threshold_s=60, production=production
        )
        assert by_name(results)["queue"].status == status, (backend, production)
    results = queue_checks(snap(live, backend="sqlite"), drain_threshold_s=60, production=True)
    assert by_name(results)["queue"].reason == (
        "the queue is the embedded SQLite one; production needs Redis (QUEUE_REDIS_URL)"
    )
    assert [r.name for r in results] == NAMES  # the other checks still read the queue


def test_the_heartbeat_in_production_fails_an_embedded_database(
    make_settings: SettingsFactory, redis_url: str
) -> None:
    live = snap(view(1, live=True, age_s=1))
    production = {"OPSCTL_ENV": "production", "OPSCTL_API_TOKEN": "t" * 32}
    on_sqlite = heartbeat_checks(live, make_settings(QUEUE_REDIS_URL=redis_url, **production))
    assert [r.name for r in on_sqlite] == [*NAMES, "database"]
    database = on_sqlite[-1]
    assert (database.status, database.reason) == (
        "fail",
        "the database is SQLite; production needs PostgreSQL (DATABASE_URL)",
    )
    body = heartbeat_body(live, on_sqlite, detailed=False)
    assert body["status"]["status"] == "fail"
    assert body["status"]["reasons"] == [f"database: {database.reason}"]
    postgres = make_settings(
        QUEUE_REDIS_URL=redis_url, DATABASE_URL="postgresql://u@127.0.0.1:1/db", **production
    )
    assert [r.status for r in heartbeat_checks(live, postgres)] == ["pass"] * 5
    development = heartbeat_checks(live, make_settings())
    assert [r.name for r in development] == NAMES


# -- a real queue, on each backend ------------------------------------------------------------


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


async def test_a_lapsed_worker_warns_then_passes_then_fails_alone(
    queue: QueueBackend, queue_settings: Settings
) -> None:
    ttl = 0.5  # stale once its key lapses; warns while its last beat is at most 1 s old
    await beat(queue, 201, ttl_s=ttl)

    async def workers() -> CheckResult:
        await beat(queue, 202, ttl_s=ttl)  # the live one beats before every read
        snapshot = await snapshot_queue(queue, queue_settings, ttl_s=ttl)
        return by_name(queue_checks(snapshot, drain_threshold_s=60, ttl_s=ttl))["workers"]

    seen: list[str] = []  # each status as it changes
    give_up = time.monotonic() + 10
    while seen[-2:] != ["warn", "pass"]:
        assert time.monotonic() < give_up, seen
        result = await workers()
        if not seen or seen[-1] != result.status:
            seen.append(result.status)
        await asyncio.sleep(0.02)
    assert seen == ["pass", "warn", "pass"], seen
    assert result.reason.startswith("1 worker(s) alive; 1 stale listed until forgotten")
    await queue.remove_heartbeat("test-host:202")
    snapshot = await snapshot_queue(queue, queue_settings, ttl_s=ttl)
    alone = by_name(queue_checks(snapshot, drain_threshold_s=60, ttl_s=ttl))["workers"]
    assert alone.status == "fail"
    assert "1 stale, last seen" in alone.reason


async def test_waiting_job_older_than_threshold_means_not_draining(
    queue: QueueBackend, queue_settings: Settings
) -> None:
    await beat(queue, 301)
    await queue.enqueue(NewJob("noop"))
    await poll_stats(queue, lambda s: s.oldest_waiting_age_s >= 0.25)
    snapshot = await snapshot_queue(queue, queue_settings)
    assert by_name(queue_checks(snapshot, drain_threshold_s=60))["draining"].status == "pass"
    draining = by_name(queue_checks(snapshot, drain_threshold_s=0.1))["draining"]
    assert draining.status == "fail"
    assert "the queue stopped draining" in draining.reason
    assert draining.observed is not None and draining.observed >= 0.25


async def test_due_delayed_work_not_promoted_fails_promotion(
    queue: QueueBackend, queue_settings: Settings
) -> None:
    await beat(queue, 351)
    await queue.enqueue_many([NewJob("soon", delay_s=0.05), NewJob("later", delay_s=600)])
    await poll_stats(queue, lambda s: s.delayed_due == 1 and s.oldest_due_age_s > 0.3)
    snapshot = await snapshot_queue(queue, queue_settings)
    assert by_name(queue_checks(snapshot, drain_threshold_s=60))["promotion"].status == "pass"
    promotion = by_name(queue_checks(snapshot, drain_threshold_s=0.3))["promotion"]
    assert promotion.status == "fail", promotion
    assert promotion.reason.startswith("1 delayed job(s) due and not promoted, the oldest")
    assert await queue.promote_due() == 1  # what a timers daemon does
    snapshot = await snapshot_queue(queue, queue_settings)
    promotion = by_name(queue_checks(snapshot, drain_threshold_s=0.3))["promotion"]
    assert (promotion.status, promotion.reason) == ("pass", "1 delayed, none due")


async def test_dead_letters_leave_the_status_pass(
    queue: QueueBackend, queue_settings: Settings
) -> None:
    await beat(queue, 401)
    await queue.enqueue(NewJob("noop"))
    [job] = await queue.reserve(1, owner="test", lease_s=30)
    assert await queue.fail(job, "boom", retry_at=None) == "dead"
    snapshot = await snapshot_queue(queue, queue_settings)
    results = queue_checks(snapshot, drain_threshold_s=60)
    dead = by_name(results)["dead_letters"]
    assert dead.status == "pass" and dead.observed == 1
    assert worst(r.status for r in results) == "pass"
    body = heartbeat_body(snapshot, results, detailed=True)
    assert body["status"]["status"] == "pass" and body["status"]["reasons"] == []
    assert body["queue"]["failed"] == 1


def test_unreachable_redis_fails_naming_the_address(make_settings: SettingsFactory) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    snapshot = read_queue_once(make_settings(QUEUE_REDIS_URL=url))
    assert snapshot.stats is None
    [only] = queue_checks(snapshot, drain_threshold_s=60)
    assert only.name == "queue" and only.status == "fail"
    assert f"cannot reach Redis at {url}" in only.reason


async def test_heartbeat_body_shape(queue: QueueBackend, queue_settings: Settings) -> None:
    await beat(queue, 501)
    await beat(queue, 502, ttl_s=0.05)  # stale at once: listed, live false
    await beat(queue, 503, role="timers")  # not a worker: not in the workers' details
    give_up = time.monotonic() + 10
    snapshot = await snapshot_queue(queue, queue_settings, ttl_s=15)
    while all(v.live for v in snapshot.processes):
        assert time.monotonic() < give_up, snapshot
        await asyncio.sleep(0.02)
        snapshot = await snapshot_queue(queue, queue_settings, ttl_s=15)
    results = queue_checks(snapshot, drain_threshold_s=60)
    short = heartbeat_body(snapshot, results, detailed=False)
    assert set(short) == {"status"}
    assert set(short["status"]) == {"status", "reasons", "checkedAt"}
    assert short["status"]["status"] == "warn"  # the stale worker beat a moment ago
    assert short["status"]["reasons"] == [f"workers: {by_name(results)['workers'].reason}"]
    full = heartbeat_body(snapshot, results, detailed=True)
    assert set(full["queue"]) == {
        "backend",
        "waiting",
        "delayed",
        "active",
        "failed",
        "oldestWaitingAgeSeconds",
        "completedLastMinute",
        "delayedDue",
        "oldestDueAgeSeconds",
    }
    assert full["queue"]["backend"] == queue_settings.queue_backend
    assert (full["queue"]["delayedDue"], full["queue"]["oldestDueAgeSeconds"]) == (0, 0)
    assert full["workers"]["alive"] == 1 and full["workers"]["stale"] == 1
    live, stale = full["workers"]["items"]
    assert live["id"] == "test-host:501" and live["inFlight"] == 1 and live["processed"] == 7
    assert live["live"] is True and 0 <= live["lastSeenSecondsAgo"] < 5
    assert (stale["id"], stale["live"]) == ("test-host:502", False)
