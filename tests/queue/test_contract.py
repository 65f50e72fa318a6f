"""The queue contract: every backend passes these, written against QueueBackend only.

Conventions the suite fixes for every backend:
- Bad input to any queue method (a payload or result that is not JSON, count <= 0, lease_s <= 0,
  a negative wait) raises :class:`opsctl.errors.QueueError`, with nothing written.
- ``JobInfo.attempts`` counts the runs a job has had: 0 when fresh, one more per failed or lapsed
  run, unchanged by ``release`` and ``defer``; ``Job.attempt`` is the number of the run being
  handed out.
- Times are the backend's clock; ``run_at`` and ``retry_at`` are given on this machine's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from opsctl.errors import QueueError
from opsctl.queue.base import Heartbeat, Job, NewJob, QueueBackend, QueueStats
from tests.queue.conftest import QueueOpener

OWNER = "test:1"


async def reserve_one(queue: QueueBackend, *, lease_s: float = 30.0) -> Job:
    jobs = await queue.reserve(1, owner=OWNER, lease_s=lease_s)
    assert len(jobs) == 1, jobs
    return jobs[0]


# -- the round trip ------------------------------------------------------------------------------


async def test_enqueue_reserve_complete_stores_the_result(queue: QueueBackend) -> None:
    job_id = await queue.enqueue(NewJob("echo", {"text": "hi", "n": [1, 2]}))
    fresh = await queue.get(job_id)
    assert fresh is not None
    assert (fresh.status, fresh.kind, fresh.payload, fresh.attempts) == (
        "ready",
        "echo",
        {"text": "hi", "n": [1, 2]},
        0,
    )
    assert fresh.queue == queue.queue

    job = await reserve_one(queue)
    assert (job.id, job.kind, job.payload, job.queue) == (
        job_id,
        "echo",
        {"text": "hi", "n": [1, 2]},
        queue.queue,
    )
    assert job.attempt == 1
    assert job.token >= 1
    assert job.max_attempts == 5
    assert job.enqueued_at == pytest.approx(fresh.created_at)
    assert job.lease_until == pytest.approx(job.enqueued_at + 30.0, abs=5.0)
    running = await queue.get(job_id)
    assert running is not None and running.status == "active"
    assert running.started_at is not None and running.started_at >= running.created_at

    assert await queue.complete([(job, {"echo": "hi"})]) == [True]
    done = await queue.get(job_id)
    assert done is not None
    assert (done.status, done.result) == ("done", {"echo": "hi"})
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert await queue.reserve(10, owner=OWNER, lease_s=30) == []


async def test_jobs_come_out_in_the_order_they_went_in(queue: QueueBackend) -> None:
    for i in range(3):
        await queue.enqueue(NewJob("n", i))
    ids = await queue.enqueue_many([NewJob("n", i) for i in range(3, 8)])
    assert len(set(ids)) == 5

    first = await queue.reserve(3, owner=OWNER, lease_s=30)
    rest = await queue.reserve(100, owner=OWNER, lease_s=30)
    assert [j.payload for j in first] == [0, 1, 2]
    assert [j.payload for j in rest] == [3, 4, 5, 6, 7]
    assert [j.id for j in rest] == ids


async def test_enqueue_many_in_bulk(queue: QueueBackend) -> None:
    ids = await queue.enqueue_many([NewJob("bulk", {"i": i}) for i in range(2500)])
    assert len(ids) == len(set(ids)) == 2500
    assert (await queue.stats()).waiting == 2500
    jobs = await queue.reserve(2500, owner=OWNER, lease_s=30)
    assert [j.id for j in jobs] == ids
    assert all(await queue.complete([(j, None) for j in jobs]))
    assert await queue.enqueue_many([]) == []


async def test_queues_are_separate(open_backend: QueueOpener) -> None:
    default, other = await open_backend(), await open_backend("other")
    await other.enqueue(NewJob("elsewhere"))
    assert await default.reserve(10, owner=OWNER, lease_s=30) == []
    assert (await default.stats()).waiting == 0
    jobs = await other.reserve(10, owner=OWNER, lease_s=30)
    assert [(j.kind, j.queue) for j in jobs] == [("elsewhere", "other")]


async def test_payload_may_be_any_json_value(queue: QueueBackend) -> None:
    values = [None, 0, 1.5, "text", "ünïcødé ✓", [1, "a"], {"nested": {"x": [None]}}]
    await queue.enqueue_many([NewJob("v", value) for value in values])
    jobs = await queue.reserve(10, owner=OWNER, lease_s=30)
    assert [j.payload for j in jobs] == values


# -- delays ---------------------------------------------------------------------------------------


async def test_delay_and_run_at_wait_in_the_delayed_set(queue: QueueBackend) -> None:
    by_delay = await queue.enqueue(NewJob("later", 1, delay_s=0.2))
    by_time = await queue.enqueue(NewJob("later", 2, run_at=time.time() + 0.2))
    now = await queue.enqueue(NewJob("now", 3, run_at=time.time() - 10))

    stats = await queue.stats()
    assert (stats.waiting, stats.delayed) == (1, 2)
    info = await queue.get(by_time)
    assert info is not None and info.status == "delayed"
    assert info.run_at == pytest.approx(time.time() + 0.2, abs=0.15)
    assert [j.id for j in await queue.reserve(10, owner=OWNER, lease_s=30)] == [now]
    assert await queue.promote_due() == 0

    await asyncio.sleep(0.3)
    assert await queue.promote_due() == 2
    assert await queue.promote_due() == 0
    jobs = await queue.reserve(10, owner=OWNER, lease_s=30)
    assert sorted(j.id for j in jobs) == sorted([by_delay, by_time])
    assert (await queue.stats()).delayed == 0


async def test_promote_due_honours_its_limit(queue: QueueBackend) -> None:
    await queue.enqueue_many([NewJob("d", i, delay_s=0.05) for i in range(5)])
    await asyncio.sleep(0.15)
    assert await queue.promote_due(limit=2) == 2
    assert await queue.promote_due(limit=10) == 3
    assert (await queue.stats()).waiting == 5


# -- dedupe ---------------------------------------------------------------------------------------


async def test_idempotency_key_gives_back_the_first_job(queue: QueueBackend) -> None:
    first = await queue.enqueue(NewJob("pay", {"amount": 1}, idempotency_key="order-7"))
    again = await queue.enqueue(NewJob("pay", {"amount": 2}, idempotency_key="order-7"))
    other = await queue.enqueue(NewJob("pay", {"amount": 3}, idempotency_key="order-8"))
    batch = await queue.enqueue_many(
        [NewJob("pay", 4, idempotency_key="order-9"), NewJob("pay", 5, idempotency_key="order-9")]
    )
    assert again == first
    assert other != first
    assert batch[0] == batch[1] != first
    assert (await queue.stats()).waiting == 3
    info = await queue.get(first)
    assert info is not None and info.payload == {"amount": 1}


async def test_explicit_job_id_is_enqueued_once(queue: QueueBackend) -> None:
    job_id = "sched:nightly:2026-01-01T00:00"
    assert await queue.enqueue(NewJob("cron", 1, job_id=job_id)) == job_id
    assert await queue.enqueue(NewJob("cron", 2, job_id=job_id)) == job_id
    assert await queue.enqueue_many([NewJob("cron", 3, job_id=job_id)]) == [job_id]
    assert (await queue.stats()).waiting == 1

    job = await reserve_one(queue)
    assert (job.id, job.payload) == (job_id, 1)
    assert await queue.complete([(job, "ran")]) == [True]
    # Still the same job once it ran: a second scheduler cannot run the occurrence again.
    assert await queue.enqueue(NewJob("cron", 4, job_id=job_id)) == job_id
    assert (await queue.stats()).waiting == 0
    info = await queue.get(job_id)
    assert info is not None and (info.status, info.result) == ("done", "ran")


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [{"when": object()}, {1, 2}, b"bytes", float("nan")],
    ids=["object", "set", "bytes", "nan"],
)
async def test_payload_that_is_not_json_is_rejected(queue: QueueBackend, payload: object) -> None:
    with pytest.raises(QueueError, match="send-mail"):
        await queue.enqueue(NewJob("send-mail", payload))
    with pytest.raises(QueueError, match="send-mail"):
        await queue.enqueue_many([NewJob("ok", 1), NewJob("send-mail", payload), NewJob("ok", 2)])
    stats = await queue.stats()
    assert (stats.waiting, stats.delayed) == (0, 0)


@pytest.mark.parametrize("result", [object(), {"ratio": float("nan")}], ids=["object", "nan"])
async def test_result_that_is_not_json_is_rejected(queue: QueueBackend, result: object) -> None:
    await queue.enqueue(NewJob("r"))
    job = await reserve_one(queue)
    with pytest.raises(QueueError):
        await queue.complete([(job, result)])
    info = await queue.get(job.id)
    assert info is not None and info.status == "active"
    assert await queue.complete([(job, "fine")]) == [True]


@pytest.mark.parametrize(
    "count, lease_s, wait_s",
    [(0, 30.0, 0.0), (-1, 30.0, 0.0), (1, 0.0, 0.0), (1, -5.0, 0.0), (1, 30.0, -1.0)],
)
async def test_reserve_rejects_bad_arguments(
    queue: QueueBackend, count: int, lease_s: float, wait_s: float
) -> None:
    await queue.enqueue(NewJob("x"))
    with pytest.raises(QueueError):
        await queue.reserve(count, owner=OWNER, lease_s=lease_s, wait_s=wait_s)
    assert (await queue.stats()).waiting == 1


async def test_renew_rejects_a_bad_lease(queue: QueueBackend) -> None:
    await queue.enqueue(NewJob("x"))
    job = await reserve_one(queue)
    with pytest.raises(QueueError):
        await queue.renew([job], lease_s=0)


async def test_unknown_job_id(queue: QueueBackend) -> None:
    assert await queue.get("no-such-job") is None
    assert await queue.retry_dead(["no-such-job"]) == 0
    assert await queue.purge_dead(["no-such-job"]) == 0


async def test_empty_batches_are_no_ops(queue: QueueBackend) -> None:
    assert await queue.complete([]) == []
    assert await queue.renew([], lease_s=30) == []
    await queue.release([])
    assert await queue.retry_dead([]) == 0
    assert await queue.purge_dead([]) == 0


# -- leases and fencing ---------------------------------------------------------------------------


async def test_lapsed_lease_is_requeued_with_a_higher_token(queue: QueueBackend) -> None:
    await queue.enqueue(NewJob("slow"))
    first = await reserve_one(queue, lease_s=0.2)
    assert await queue.requeue_expired() == 0

    await asyncio.sleep(0.3)
    assert await queue.requeue_expired() == 1
    assert await queue.requeue_expired() == 0
    info = await queue.get(first.id)
    assert info is not None and (info.status, info.attempts) == ("ready", 1)

    second = await reserve_one(queue)
    assert second.id == first.id
    assert second.token > first.token
    assert second.attempt == 2


async def test_late_finisher_cannot_overwrite_the_new_owner(queue: QueueBackend) -> None:
    await queue.enqueue(NewJob("race"))
    old = await reserve_one(queue, lease_s=0.2)
    await asyncio.sleep(0.3)
    assert await queue.requeue_expired() == 1
    # Lapsed and back in the queue: the old owner's word no longer counts.
    assert await queue.complete([(old, "old, before")]) == [False]

    new = await reserve_one(queue)
    assert await queue.complete([(old, "old")]) == [False]
    assert await queue.fail(old, "old failed", retry_at=time.time()) == "stale"
    assert await queue.renew([old], lease_s=30) == [old.id]
    await queue.release([old])
    info = await queue.get(new.id)
    assert info is not None and info.status == "active"
    assert info.last_error != "old failed"

    assert await queue.renew([new], lease_s=30) == []
    assert await queue.complete([(new, "new")]) == [True]
    assert await queue.complete([(old, "old, after")]) == [False]
    assert await queue.complete([(new, "twice")]) == [False]
    info = await queue.get(new.id)
    assert info is not None and (info.status, info.result) == ("done", "new")


async def test_renew_extends_the_lease(queue: QueueBackend) -> None:
    await queue.enqueue(NewJob("long"))
    job = await reserve_one(queue, lease_s=0.3)
    await asyncio.sleep(0.15)
    assert await queue.renew([job], lease_s=2.0) == []
    await asyncio.sleep(0.3)  # past the first lease
    assert await queue.requeue_expired() == 0
    assert await queue.complete([(job, "ok")]) == [True]


async def test_renew_reports_each_lost_lease(queue: QueueBackend) -> None:
    await queue.enqueue_many([NewJob("a"), NewJob("b"), NewJob("c")])
    jobs = await queue.reserve(3, owner=OWNER, lease_s=30)
    assert await queue.complete([(jobs[1], None)]) == [True]
    assert await queue.renew(jobs, lease_s=30) == [jobs[1].id]


async def test_a_job_that_kills_its_worker_every_time_is_dead_lettered(
    queue: QueueBackend,
) -> None:
    job_id = await queue.enqueue(NewJob("poison", max_attempts=2))
    for attempt in (1, 2):
        job = await reserve_one(queue, lease_s=0.1)
        assert job.attempt == attempt
        await asyncio.sleep(0.2)
        assert await queue.requeue_expired() == 1
    info = await queue.get(job_id)
    assert info is not None
    assert (info.status, info.attempts) == ("dead", 2)
    assert info.last_error
    assert [d.id for d in await queue.dead()] == [job_id]
    assert await queue.reserve(1, owner=OWNER, lease_s=30) == []


# -- failure, retry, dead letters -----------------------------------------------------------------


async def test_failed_job_retries_through_delayed_then_dies(queue: QueueBackend) -> None:
    job_id = await queue.enqueue(NewJob("flaky", {"x": 1}, max_attempts=2))
    job = await reserve_one(queue)
    assert await queue.fail(job, "boom 1", retry_at=time.time() + 0.15) == "retry"
    info = await queue.get(job_id)
    assert info is not None
    assert (info.status, info.attempts, info.last_error) == ("delayed", 1, "boom 1")
    stats = await queue.stats()
    assert (stats.active, stats.delayed, stats.failed) == (0, 1, 0)
    assert await queue.promote_due() == 0

    await asyncio.sleep(0.25)
    assert await queue.promote_due() == 1
    job = await reserve_one(queue)
    assert job.attempt == 2
    assert await queue.fail(job, "boom 2", retry_at=time.time() + 0.1) == "dead"
    info = await queue.get(job_id)
    assert info is not None
    assert (info.status, info.attempts, info.last_error) == ("dead", 2, "boom 2")
    assert info.payload == {"x": 1}
    stats = await queue.stats()
    assert (stats.active, stats.delayed, stats.failed) == (0, 0, 1)
    assert await queue.fail(job, "again", retry_at=None) == "stale"


async def test_fail_without_retry_time_dead_letters_at_once(queue: QueueBackend) -> None:
    job_id = await queue.enqueue(NewJob("fatal"))
    job = await reserve_one(queue)
    assert await queue.fail(job, "ValueError: bad input", retry_at=None) == "dead"
    info = await queue.get(job_id)
    assert info is not None
    assert (info.status, info.attempts, info.last_error) == ("dead", 1, "ValueError: bad input")


async def test_release_puts_jobs_back_at_the_front_without_counting(queue: QueueBackend) -> None:
    await queue.enqueue_many([NewJob("a", 1), NewJob("b", 2)])
    held = await queue.reserve(2, owner=OWNER, lease_s=30)
    await queue.enqueue(NewJob("c", 3))
    await queue.release(held)

    info = await queue.get(held[0].id)
    assert info is not None and (info.status, info.attempts) == ("ready", 0)
    again = await queue.reserve(3, owner=OWNER, lease_s=30)
    assert [j.payload for j in again] == [1, 2, 3]
    assert [j.attempt for j in again] == [1, 1, 1]
    assert again[0].token > held[0].token and again[1].token > held[1].token
    # The released reservation is over: its token cannot finish the job.
    assert await queue.complete([(held[0], "old")]) == [False]


async def test_dead_lists_newest_first_and_retry_or_purge(queue: QueueBackend) -> None:
    ids = []
    for i in range(3):
        ids.append(await queue.enqueue(NewJob("doomed", i)))
        job = await reserve_one(queue)
        assert await queue.fail(job, f"error {i}", retry_at=None) == "dead"
        await asyncio.sleep(0.01)
    dead = await queue.dead()
    assert [d.id for d in dead] == ids[::-1]
    assert [d.last_error for d in dead] == ["error 2", "error 1", "error 0"]
    assert [d.id for d in await queue.dead(limit=1)] == [ids[2]]

    assert await queue.retry_dead([ids[0], "unknown"]) == 1
    info = await queue.get(ids[0])
    assert info is not None and (info.status, info.attempts) == ("ready", 0)
    job = await reserve_one(queue)
    assert (job.id, job.attempt) == (ids[0], 1)
    assert await queue.retry_dead([ids[0]]) == 0  # not dead any more

    assert await queue.purge_dead([ids[1]]) == 1
    assert await queue.get(ids[1]) is None
    assert await queue.purge_dead() == 1
    assert await queue.get(ids[2]) is None
    assert await queue.dead() == []
    assert (await queue.stats()).failed == 0


async def test_retry_dead_all(queue: QueueBackend) -> None:
    await queue.enqueue_many([NewJob("doomed", i) for i in range(3)])
    for job in await queue.reserve(3, owner=OWNER, lease_s=30):
        await queue.fail(job, "no", retry_at=None)
    assert (await queue.stats()).failed == 3
    assert await queue.retry_dead() == 3
    stats = await queue.stats()
    assert (stats.failed, stats.waiting) == (0, 3)


# -- stats ----------------------------------------------------------------------------------------


async def test_stats_counts_every_state(queue: QueueBackend) -> None:
    empty = await queue.stats()
    assert (empty.waiting, empty.delayed, empty.active, empty.failed) == (0, 0, 0, 0)
    assert empty.completed_last_minute == 0
    assert empty.oldest_waiting_age_s == 0
    assert empty.backend in ("redis", "sqlite")

    await queue.enqueue_many([NewJob("s", i) for i in range(6)])
    await queue.enqueue(NewJob("s", "later", delay_s=60))
    done, dead, running = await queue.reserve(3, owner=OWNER, lease_s=30)
    assert await queue.complete([(done, None)]) == [True]
    assert await queue.fail(dead, "x", retry_at=None) == "dead"
    del running

    stats = await queue.stats()
    assert (stats.waiting, stats.delayed, stats.active, stats.failed) == (3, 1, 1, 1)
    assert stats.completed_last_minute == 1

    rest = await queue.reserve(3, owner=OWNER, lease_s=30)
    assert await queue.complete([(job, None) for job in rest]) == [True, True, True]
    assert (await queue.stats()).completed_last_minute == 4


async def test_oldest_waiting_age_grows(queue: QueueBackend) -> None:
    await queue.enqueue(NewJob("waits"))
    first = (await queue.stats()).oldest_waiting_age_s
    await asyncio.sleep(0.25)
    later = (await queue.stats()).oldest_waiting_age_s
    assert 0 <= first < 0.2
    assert later >= first + 0.2
    await reserve_one(queue)
    assert (await queue.stats()).oldest_waiting_age_s == 0


async def poll_stats(
    queue: QueueBackend, until: Callable[[QueueStats], bool], deadline_s: float = 10
) -> QueueStats:
    give_up = time.monotonic() + deadline_s
    while not until(stats := await queue.stats()):
        assert time.monotonic() < give_up, f"not within {deadline_s} s: {stats}"
        await asyncio.sleep(0.02)
    return stats


async def test_stats_count_due_delayed_jobs_and_the_most_overdue(queue: QueueBackend) -> None:
    empty = await queue.stats()
    assert (empty.delayed_due, empty.oldest_due_age_s) == (0, 0)
    await queue.enqueue_many([NewJob("soon", delay_s=0.05), NewJob("later", delay_s=600)])
    assert (await queue.stats()).delayed == 2
    due = await poll_stats(queue, lambda s: s.delayed_due == 1 and s.oldest_due_age_s >= 0.2)
    assert due.delayed == 2 and due.oldest_due_age_s < 5
    # A retry due now joins them; the age stays the most overdue job's.
    await queue.enqueue(NewJob("flaky"))
    job = await reserve_one(queue)
    assert await queue.fail(job, "try again", retry_at=time.time()) == "retry"
    both = await poll_stats(queue, lambda s: s.delayed_due == 2)
    assert both.delayed == 3 and both.oldest_due_age_s >= due.oldest_due_age_s
    assert await queue.promote_due() == 2
    after = await queue.stats()
    assert (after.delayed, after.delayed_due, after.oldest_due_age_s, after.waiting) == (1, 0, 0, 2)


# -- heartbeats -----------------------------------------------------------------------------------


async def test_heartbeats_live_stale_and_removed(queue: QueueBackend) -> None:
    started = time.time()
    await queue.beat(
        Heartbeat(
            "host-a:11",
            "worker",
            started,
            in_flight=2,
            processed=40,
            version="0.1.0",
            extra={"concurrency": 10},
        ),
        ttl_s=5,
    )
    await queue.beat(Heartbeat("host-b:22", "worker", started), ttl_s=0.3)
    await queue.beat(Heartbeat("host-a:33", "timers", started), ttl_s=5)

    views = {v.heartbeat.id: v for v in await queue.heartbeats(ttl_s=5)}
    assert set(views) == {"host-a:11", "host-b:22", "host-a:33"}
    assert all(v.live for v in views.values())
    a = views["host-a:11"]
    assert (a.heartbeat.role, a.heartbeat.in_flight, a.heartbeat.processed) == ("worker", 2, 40)
    assert (a.heartbeat.version, a.heartbeat.extra) == ("0.1.0", {"concurrency": 10})
    assert a.heartbeat.started_at == pytest.approx(started)
    assert 0 <= a.age_s < 1
    assert a.last_seen > 0

    await asyncio.sleep(0.45)
    # host-a:11 beats again; host-b:22 has stopped and its short TTL lapsed.
    await queue.beat(Heartbeat("host-a:11", "worker", started, processed=41), ttl_s=5)
    await queue.beat(Heartbeat("host-a:33", "timers", started), ttl_s=5)
    views = {v.heartbeat.id: v for v in await queue.heartbeats(ttl_s=0.3)}
    assert set(views) == {"host-a:11", "host-b:22", "host-a:33"}
    assert views["host-a:11"].live and views["host-a:11"].heartbeat.processed == 41
    stale = views["host-b:22"]
    assert not stale.live
    assert stale.heartbeat.role == "worker"
    assert stale.age_s >= 0.4

    await queue.remove_heartbeat("host-a:11")
    views = {v.heartbeat.id: v for v in await queue.heartbeats(ttl_s=5)}
    assert set(views) == {"host-b:22", "host-a:33"}
    assert views["host-a:33"].live


async def wait_stale(queue: QueueBackend, process_id: str, *, ttl_s: float = 5) -> None:
    give_up = time.monotonic() + 10
    while True:
        views = {v.heartbeat.id: v for v in await queue.heartbeats(ttl_s=ttl_s)}
        if process_id in views and not views[process_id].live:
            return
        assert time.monotonic() < give_up, views
        await asyncio.sleep(0.02)


async def test_forget_heartbeats_removes_every_trace_of_the_known_ones(
    open_backend: QueueOpener,
) -> None:
    queue, other = await open_backend(), await open_backend()
    started = time.time()
    await queue.beat(Heartbeat("host-a:1", "worker", started), ttl_s=5)
    await queue.beat(Heartbeat("host-b:2", "worker", started), ttl_s=0.05)
    await queue.beat(Heartbeat("host-c:3", "web", started), ttl_s=0.05)
    await wait_stale(queue, "host-b:2")
    await wait_stale(queue, "host-c:3")

    # Unknown ids are left out of the answer and change nothing; each id counts once.
    forgotten = await other.forget_heartbeats(["nobody:9", "host-b:2", "", "host-b:2"])
    assert forgotten == ["host-b:2"]
    assert {v.heartbeat.id for v in await queue.heartbeats(ttl_s=5)} == {"host-a:1", "host-c:3"}
    assert await queue.forget_heartbeats(["host-b:2"]) == []  # already gone
    assert await queue.forget_heartbeats([]) == []

    # only_stale keeps a process still beating, and forgets a lapsed one.
    assert await queue.forget_heartbeats(["host-a:1", "host-c:3"], only_stale=True) == ["host-c:3"]
    [kept] = await queue.heartbeats(ttl_s=5)
    assert (kept.heartbeat.id, kept.live) == ("host-a:1", True)
    assert await queue.forget_heartbeats(["host-a:1"]) == ["host-a:1"]
    assert await queue.heartbeats(ttl_s=5) == []

    # A forgotten process that beats again is back, whole.
    await queue.beat(Heartbeat("host-b:2", "worker", started, processed=3), ttl_s=5)
    [back] = await queue.heartbeats(ttl_s=5)
    assert (back.heartbeat.id, back.live, back.heartbeat.processed) == ("host-b:2", True, 3)


async def test_forget_heartbeats_with_hostile_ids_loses_nothing(queue: QueueBackend) -> None:
    started = time.time()
    for pid in range(3):
        await queue.beat(Heartbeat(f"host:{pid}", "worker", started), ttl_s=0.05)
    await wait_stale(queue, "host:2")
    hostile = ["*", "host:*", "index", "last", "x" * 20_000, " host:1", "host:1\n", "%s", "'; --"]
    assert await queue.forget_heartbeats(hostile) == []
    assert await queue.forget_heartbeats(hostile, only_stale=True) == []
    views = await queue.heartbeats(ttl_s=5)
    assert sorted(v.heartbeat.id for v in views) == ["host:0", "host:1", "host:2"]
    with pytest.raises(QueueError, match="not valid Unicode"):
        await queue.forget_heartbeats(["host:0", "bad\udc80"])
    assert len(await queue.heartbeats(ttl_s=5)) == 3  # refused before anything was forgotten
    for reserved in ("index", "last", ""):
        with pytest.raises(QueueError, match="a heartbeat needs a process id"):
            await queue.beat(Heartbeat(reserved, "worker", started), ttl_s=5)
    many = [f"host:{pid}" for pid in range(3)] + [f"ghost:{i}" for i in range(2500)]
    assert await queue.forget_heartbeats(many) == ["host:0", "host:1", "host:2"]


# -- several workers ------------------------------------------------------------------------------


async def test_reserve_wait_wakes_when_another_connection_enqueues(
    open_backend: QueueOpener,
) -> None:
    worker, producer = await open_backend(), await open_backend()
    started = time.monotonic()
    assert await worker.reserve(1, owner=OWNER, lease_s=30, wait_s=0.2) == []
    assert 0.15 <= time.monotonic() - started < 1.5

    waiting = asyncio.create_task(worker.reserve(5, owner=OWNER, lease_s=30, wait_s=5.0))
    await asyncio.sleep(0.1)
    enqueued = time.monotonic()
    job_id = await producer.enqueue(NewJob("wake"))
    jobs = await asyncio.wait_for(waiting, timeout=5.0)
    assert [j.id for j in jobs] == [job_id]
    assert time.monotonic() - enqueued < 1.0


async def test_every_blocked_reserver_wakes_for_a_batch(open_backend: QueueOpener) -> None:
    workers = [await open_backend() for _ in range(3)]
    producer = await open_backend()
    waiting = [
        asyncio.create_task(w.reserve(1, owner=f"w{i}", lease_s=30, wait_s=5.0))
        for i, w in enumerate(workers)
    ]
    await asyncio.sleep(0.1)
    enqueued = time.monotonic()
    ids = await producer.enqueue_many([NewJob("fan", i) for i in range(3)])
    got = await asyncio.wait_for(asyncio.gather(*waiting), timeout=5.0)
    assert sorted(j.id for jobs in got for j in jobs) == sorted(ids)
    assert time.monotonic() - enqueued < 1.5


async def test_concurrent_reservers_never_share_a_job(open_backend: QueueOpener) -> None:
    producer = await open_backend()
    ids = await producer.enqueue_many([NewJob("share", i) for i in range(300)])
    workers = [await open_backend() for _ in range(4)]

    async def drain(worker: QueueBackend, name: str) -> list[Job]:
        taken: list[Job] = []
        while jobs := await worker.reserve(7, owner=name, lease_s=30):
            taken.extend(jobs)
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(drain(w, f"w{i}") for i, w in enumerate(workers)))
    taken = [job.id for jobs in results for job in jobs]
    assert len(taken) == len(set(taken)) == 300
    assert set(taken) == set(ids)
    assert (await producer.stats()).active == 300
    flags = await asyncio.gather(
        *(w.complete([(j, None) for j in jobs]) for w, jobs in zip(workers, results, strict=True))
    )
    assert all(all(f) for f in flags)
    assert (await producer.stats()).completed_last_minute == 300


async def test_ping(queue: QueueBackend) -> None:
    assert 0 <= await queue.ping() < 1.0


@pytest.mark.parametrize("steps", range(8))
async def test_a_cancelled_reserve_strands_no_job(queue: QueueBackend, steps: int) -> None:
    """Wherever the cancellation lands, every job is either handed out or back in the queue."""
    await queue.enqueue_many([NewJob("c", i) for i in range(5)])
    task = asyncio.create_task(queue.reserve(5, owner=OWNER, lease_s=30))
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    try:
        handed_out = len(await task)
    except asyncio.CancelledError:
        handed_out = 0
    stats = await queue.stats()
    assert (stats.active, stats.waiting) == (handed_out, 5 - handed_out)


# -- defer ----------------------------------------------------------------------------------------


async def test_defer_waits_in_the_delayed_set_without_counting_the_run(
    queue: QueueBackend,
) -> None:
    job_id = await queue.enqueue(NewJob("patient", {"x": 1}, max_attempts=2))
    job = await reserve_one(queue)
    outcome = await queue.defer(job, run_at=time.time() + 0.2, reason="vendor: wait 0.2 s")
    assert outcome == "deferred"
    info = await queue.get(job_id)
    assert info is not None
    assert (info.status, info.attempts) == ("delayed", 0)
    assert (info.deferred_reason, info.last_error) == ("vendor: wait 0.2 s", None)
    assert info.run_at == pytest.approx(time.time() + 0.2, abs=0.15)
    stats = await queue.stats()
    assert (stats.active, stats.delayed, stats.waiting) == (0, 1, 0)
    assert await queue.reserve(1, owner=OWNER, lease_s=30) == []
    assert await queue.promote_due() == 0

    await asyncio.sleep(0.3)
    assert await queue.promote_due() == 1
    info = await queue.get(job_id)
    assert info is not None and info.status == "ready"
    again = await reserve_one(queue)
    assert (again.id, again.payload, again.attempt) == (job_id, {"x": 1}, job.attempt)
    assert again.token > job.token
    # The deferred reservation is over: its token can neither finish nor defer the job.
    assert await queue.complete([(job, "old")]) == [False]
    assert await queue.defer(job, run_at=time.time(), reason="old") == "stale"


async def test_defer_many_times_never_uses_up_the_attempts(queue: QueueBackend) -> None:
    job_id = await queue.enqueue(NewJob("patient", max_attempts=1))
    tokens = []
    for n in range(4):
        job = await reserve_one(queue)
        assert job.attempt == 1
        tokens.append(job.token)
        reason = None if n == 3 else f"wait {n}"
        assert await queue.defer(job, run_at=time.time() - 1, reason=reason) == "deferred"
        info = await queue.get(job_id)
        assert info is not None
        assert (info.status, info.attempts, info.deferred_reason) == ("delayed", 0, reason)
        assert await queue.promote_due() == 1
    assert tokens == sorted(set(tokens))
    job = await reserve_one(queue)
    assert await queue.complete([(job, "ran")]) == [True]
    info = await queue.get(job_id)
    assert info is not None and (info.status, info.attempts, info.result) == ("done", 1, "ran")


async def test_defer_with_a_stale_token_leaves_the_new_owner_alone(queue: QueueBackend) -> None:
    job_id = await queue.enqueue(NewJob("race"))
    old = await reserve_one(queue, lease_s=0.2)
    await asyncio.sleep(0.3)
    assert await queue.requeue_expired() == 1
    # Lapsed and back in the queue: the old owner cannot put it off.
    assert await queue.defer(old, run_at=time.time() + 60, reason="late") == "stale"
    info = await queue.get(job_id)
    assert info is not None and (info.status, info.attempts) == ("ready", 1)

    new = await reserve_one(queue)
    assert await queue.defer(old, run_at=time.time() + 60, reason="later") == "stale"
    info = await queue.get(job_id)
    assert info is not None
    assert (info.status, info.attempts, info.deferred_reason) == ("active", 2, None)
    stats = await queue.stats()
    assert (stats.active, stats.delayed) == (1, 0)
    assert await queue.renew([new], lease_s=30) == []
    assert await queue.complete([(new, "new")]) == [True]
    info = await queue.get(job_id)
    assert info is not None and (info.status, info.result) == ("done", "new")


async def test_defer_of_a_finished_job_is_stale(queue: QueueBackend) -> None:
    done_id, dead_id = await queue.enqueue_many([NewJob("a"), NewJob("b")])
    done, dead = await queue.reserve(2, owner=OWNER, lease_s=30)
    assert await queue.complete([(done, "ok")]) == [True]
    assert await queue.fail(dead, "no", retry_at=None) == "dead"
    for job in (done, dead):
        assert await queue.defer(job, run_at=time.time() + 60, reason="too late") == "stale"
    finished = await queue.get(done_id)
    assert finished is not None
    assert (finished.status, finished.result, finished.deferred_reason) == ("done", "ok", None)
    failed = await queue.get(dead_id)
    assert failed is not None and (failed.status, failed.attempts) == ("dead", 1)
    stats = await queue.stats()
    assert (stats.delayed, stats.failed) == (0, 1)


@pytest.mark.parametrize(
    "run_at", [float("nan"), float("inf"), float("-inf"), "soon", None], ids=repr
)
async def test_defer_rejects_a_time_that_is_not_a_finite_number(
    queue: QueueBackend, run_at: object
) -> None:
    await queue.enqueue(NewJob("x"))
    job = await reserve_one(queue)
    with pytest.raises(QueueError, match="run_at"):
        await queue.defer(job, run_at=run_at, reason="bad")  # type: ignore[arg-type]
    info = await queue.get(job.id)
    assert info is not None and (info.status, info.attempts) == ("active", 1)
    assert await queue.defer(job, run_at=time.time() + 60) == "deferred"
