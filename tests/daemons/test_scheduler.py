"""Schedulers and timers side by side, and a scheduler back from downtime."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Callable

import pytest

from opsctl.errors import NotFound
from opsctl.queue import NewJob, QueueBackend, connect_queue
from opsctl.schedules import add_schedule, enqueue_due, get_schedule, set_enabled
from opsctl.settings import Settings
from opsctl.store import Store, connect, migrate
from tests._support import Daemon, run_opsctl
from tests.daemons.conftest import Stack, eventually


@pytest.mark.slow
async def test_two_schedulers_and_two_timers_do_everything_once(
    redis_stack: Stack, pg_url: str, daemons: Callable[..., Daemon]
) -> None:
    stack = redis_stack
    env = {**stack.env, "DATABASE_URL": pg_url}
    added = run_opsctl(
        "schedules", "add", "tick", "--cron", "* * * * * *", "--kind", "test.record", env=env
    )
    assert added.returncode == 0, added.stderr
    queue = await connect_queue(stack.settings)
    try:
        delayed = await queue.enqueue_many(
            [NewJob("test.record", delay_s=0.5 + i / 100) for i in range(30)]
        )
        schedulers = [
            daemons("daemon", "scheduler", env=env, log_name=f"scheduler-{n}.log") for n in (1, 2)
        ]
        timers = [
            daemons("daemon", "timers", "--interval", "0.05", env=env, log_name=f"timers-{n}.log")
            for n in (1, 2)
        ]
        # Only the timers daemons move delayed jobs here: the worker's fallback is off.
        worker = daemons(
            "daemon", "worker", "--import", "testjobs", "--maintenance-interval", "0", env=env
        )

        async def occurrences() -> bool:
            return sum(1 for j in stack.run_counts() if j.startswith("sched:tick:")) >= 3

        await eventually(occurrences, within=15, what="three occurrences run")
        for daemon in schedulers:
            daemon.signal(signal.SIGTERM)
        for daemon in schedulers:
            assert daemon.proc.wait(10) == 0, daemon.output

        async def idle() -> bool:
            stats = await queue.stats()
            return stats.waiting == stats.active == stats.delayed == 0

        await eventually(idle, within=10, what="an idle queue")
    finally:
        await queue.close()

    counts = stack.run_counts()
    assert all(n == 1 for n in counts.values()), {j: n for j, n in counts.items() if n > 1}
    assert set(delayed) <= set(counts), "a delayed job was never promoted"
    runs = sorted(int(j.rsplit(":", 1)[1]) for j in counts if j.startswith("sched:tick:"))
    assert len(runs) == len(set(runs)) >= 3
    # Each occurrence is reported by exactly one of the two schedulers.
    reported = Counter(
        line.split("enqueued ", 1)[1].split(" ", 1)[0]
        for daemon in schedulers
        for line in daemon.output.splitlines()
        if '"enqueued sched:tick:' in line
    )
    assert all(n == 1 for n in reported.values()), reported
    assert set(reported) == {f"sched:tick:{r}" for r in runs}
    for daemon in [*timers, worker]:
        assert daemon.proc.poll() is None, daemon.output
        assert "Traceback" not in daemon.output


T0 = 1_700_000_100.0  # a multiple of 300 s: an occurrence of "*/5 * * * *"


async def test_after_downtime_only_the_latest_missed_occurrence_is_enqueued(
    store: Store, store_settings: Settings
) -> None:
    await migrate(store)
    await add_schedule(store, "every5", "*/5 * * * *", "noop", {"n": 1}, clock=lambda: T0)
    queue = await connect_queue(store_settings)
    other = await connect(store_settings)  # a second scheduler's connection

    async def queue_for(name: str) -> QueueBackend:
        return queue

    try:
        assert await enqueue_due(store, queue_for, now=T0 + 10) == []
        later = T0 + 5 * 3600 + 7  # five hours of downtime: sixty occurrences missed
        both = await asyncio.gather(
            enqueue_due(store, queue_for, now=later), enqueue_due(other, queue_for, now=later)
        )
        reported = [o for result in both for o in result]
        assert [o.at for o in reported] == [T0 + 5 * 3600]
        assert reported[0].job_id == f"sched:every5:{int(T0) + 5 * 3600}"
        assert (await queue.stats()).waiting == 1
        info = await queue.get(reported[0].job_id)
        assert info is not None and info.kind == "noop" and info.payload == {"n": 1}

        assert await enqueue_due(store, queue_for, now=later + 60) == []
        nxt = await enqueue_due(store, queue_for, now=later + 300)
        assert [o.at for o in nxt] == [T0 + 5 * 3600 + 300]
        assert (await get_schedule(store, "every5")).last_occurrence == T0 + 5 * 3600 + 300
        assert (await queue.stats()).waiting == 2
    finally:
        await other.close()
        await queue.close()


async def test_a_paused_schedule_enqueues_nothing_and_resumes_from_then(
    store: Store, store_settings: Settings
) -> None:
    await migrate(store)
    await add_schedule(store, "every5", "*/5 * * * *", "noop", clock=lambda: T0)
    queue = await connect_queue(store_settings)

    async def queue_for(name: str) -> QueueBackend:
        return queue

    async def due_at(now: float) -> list[float]:
        return [o.at for o in await enqueue_due(store, queue_for, now=now)]

    try:
        assert await due_at(T0 + 310) == [T0 + 300]
        paused, changed = await set_enabled(store, "every5", False, clock=lambda: T0 + 400)
        assert changed and not paused.enabled and paused.to_json()["next_occurrence"] is None
        assert (await set_enabled(store, "every5", False))[1] is False  # already paused
        assert await due_at(T0 + 5 * 3600 + 7) == []  # five hours paused: nothing

        resumed_at = T0 + 5 * 3600 + 100
        resumed, changed = await set_enabled(store, "every5", True, clock=lambda: resumed_at)
        assert changed and resumed.enabled and resumed.resumed_at == resumed_at
        # The occurrence at T0 + 5 h fell while paused: not enqueued, unlike after downtime.
        assert await due_at(resumed_at + 1) == []
        assert await due_at(T0 + 5 * 3600 + 301) == [T0 + 5 * 3600 + 300]
        assert (await get_schedule(store, "every5")).last_occurrence == T0 + 5 * 3600 + 300
        assert (await queue.stats()).waiting == 2
        assert (await set_enabled(store, "every5", True))[1] is False  # already running
        with pytest.raises(NotFound, match="no schedule named 'ghost'"):
            await set_enabled(store, "ghost", False)
    finally:
        await queue.close()
