"""``/metrics`` shows what never changes the heartbeat's status: dead letters, stale processes
of every role, and due delayed work not yet promoted, read from a real queue on each backend."""

from __future__ import annotations

import asyncio
import time

from daemons.web.metrics import render
from opsctl.health import snapshot_queue
from opsctl.queue import Heartbeat, NewJob, QueueBackend
from opsctl.settings import Settings
from opsctl.verdict import queue_checks, worst


def samples(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


async def test_dead_letters_stale_processes_and_due_work_are_gauges(
    queue: QueueBackend, queue_settings: Settings
) -> None:
    now = time.time()
    await queue.beat(Heartbeat("w:1", "worker", now), ttl_s=60)
    await queue.beat(Heartbeat("w:2", "worker", now), ttl_s=0.05)
    await queue.beat(Heartbeat("t:3", "timers", now), ttl_s=0.05)
    await queue.enqueue_many([NewJob("doomed"), NewJob("soon", delay_s=0.05)])
    [job] = await queue.reserve(1, owner="test", lease_s=30)
    assert await queue.fail(job, "no", retry_at=None) == "dead"
    give_up = time.monotonic() + 10
    while True:
        snapshot = await snapshot_queue(queue, queue_settings)
        stale = [v for v in snapshot.processes if not v.live]
        if len(stale) == 2 and snapshot.stats and snapshot.stats.oldest_due_age_s > 0.1:
            break
        assert time.monotonic() < give_up, snapshot
        await asyncio.sleep(0.02)
    text = render(snapshot)
    got = samples(text)
    backend = f'backend="{queue_settings.queue_backend}"'
    assert got[f"opsctl_queue_dead_letters{{{backend}}}"] == "1"
    assert got[f"opsctl_queue_delayed_due{{{backend}}}"] == "1"
    assert float(got[f"opsctl_queue_delayed_overdue_seconds{{{backend}}}"]) > 0.1
    assert got['opsctl_workers{state="alive"}'] == "1"
    assert got['opsctl_workers{state="stale"}'] == "1"
    assert got['opsctl_processes{role="worker",state="alive"}'] == "1"
    assert got['opsctl_processes{role="worker",state="stale"}'] == "1"
    assert got['opsctl_processes{role="timers",state="stale"}'] == "1"
    assert "# TYPE opsctl_queue_delayed_due gauge" in text
    # The same snapshot's verdict: the stale worker beat a moment ago (warn), nothing fails.
    results = queue_checks(snapshot, drain_threshold_s=60)
    assert worst(r.status for r in results) == "warn"
    assert {r.name: r.status for r in results}["dead_letters"] == "pass"
