"""What only the embedded SQLite queue has to prove: one file shared by several processes.

The shared contract suite covers the semantics; these tests cover the file itself: real worker
processes racing for jobs, files that are not databases, a data directory that is a file, two
processes creating the schema at once, and a lock held too long.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from opsctl.errors import QueueError, QueueUnavailable
from opsctl.queue import NewJob, connect_queue
from opsctl.queue._sqlite import SCHEMA_VERSION, SQLiteQueue
from tests._support import clean_env
from tests.conftest import SettingsFactory

REPO = Path(__file__).resolve().parents[2]

# Every helper script takes (go, ready, *args): it touches ``ready``, then waits for ``go``.

# A worker: reserves and completes until the queue is empty, then writes the ids it completed
# (with the acknowledgement flags) as JSON.
WORKER = """
import asyncio, json, os, sys
from pathlib import Path
from opsctl.queue._sqlite import SQLiteQueue

async def main(go, ready, path, out):
    queue = await SQLiteQueue.open(Path(path))
    Path(ready).touch()
    while not Path(go).exists():
        await asyncio.sleep(0.001)
    done, acks = [], []
    while True:
        jobs = await queue.reserve(10, owner=str(os.getpid()), lease_s=30, wait_s=0.3)
        if not jobs:
            break
        acks += await queue.complete([(job, os.getpid()) for job in jobs])
        done += [job.id for job in jobs]
    await queue.close()
    Path(out).write_text(json.dumps({"pid": os.getpid(), "done": done, "acks": acks}))

asyncio.run(main(*sys.argv[1:]))
"""

# Opens (creating) several new queue files the moment the go file appears, one job in each.
OPENER = """
import asyncio, sys
from pathlib import Path
from opsctl.queue import NewJob
from opsctl.queue._sqlite import SQLiteQueue

async def main(go, ready, folder, tag):
    Path(ready).touch()
    while not Path(go).exists():
        pass  # spin: both processes must reach the open within microseconds of each other
    for i in range(8):
        queue = await SQLiteQueue.open(Path(folder) / f"q{i}.db")
        await queue.enqueue(NewJob("k", {"by": tag}))
        await queue.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def _run_together(tmp_path: Path, source: str, argv: list[list[str]]) -> None:
    """Run one helper process per argument list, released at once when all are ready."""
    script = tmp_path / "helper.py"
    script.write_text(textwrap.dedent(source))
    go = tmp_path / "go"
    readies = [tmp_path / f"helper{i}.ready" for i in range(len(argv))]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(go),
            str(ready),
            *args,
            cwd=REPO,
            env=clean_env({"PYTHONPATH": str(REPO)}),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for args, ready in zip(argv, readies, strict=True)
    ]
    try:
        deadline = time.monotonic() + 20
        while not all(ready.exists() for ready in readies):
            for proc in procs:
                if proc.returncode is not None:
                    output, _ = await proc.communicate()
                    pytest.fail(f"a helper process exited early:\n{output.decode()}")
            assert time.monotonic() < deadline, "the helper processes did not start"
            await asyncio.sleep(0.005)
        go.touch()
        for proc in procs:
            output, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, output.decode()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_three_processes_complete_every_job_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    async with await SQLiteQueue.open(path) as queue:
        ids = await queue.enqueue_many([NewJob("k", {"n": n}) for n in range(1000)])
    assert len(set(ids)) == 1000

    outs = [tmp_path / f"worker{i}.json" for i in range(3)]
    await _run_together(tmp_path, WORKER, [[str(path), str(out)] for out in outs])

    reports = [json.loads(out.read_text()) for out in outs]
    runs = Counter(job_id for report in reports for job_id in report["done"])
    assert set(runs) == set(ids), "a job was never run"
    assert max(runs.values()) == 1, "a job was handed out twice"
    assert all(all(report["acks"]) for report in reports)
    assert sum(1 for report in reports if report["done"]) >= 2, "the processes did not share"

    async with await SQLiteQueue.open(path) as queue:
        stats = await queue.stats()
        assert (stats.waiting, stats.active, stats.delayed) == (0, 0, 0)
        assert stats.completed_last_minute == 1000
        owner = {job_id: r["pid"] for r in reports for job_id in r["done"]}
        for job_id in ids[::97]:
            info = await queue.get(job_id)
            assert info is not None and info.status == "done"
            assert info.result == owner[job_id] and info.attempts == 1


async def test_two_processes_create_the_schema_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    await _run_together(tmp_path, OPENER, [[str(folder), "0"], [str(folder), "1"]])

    for i in range(8):
        path = folder / f"q{i}.db"
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        async with await SQLiteQueue.open(path) as queue:
            jobs = await queue.reserve(5, owner="test", lease_s=5)
            assert sorted(job.payload["by"] for job in jobs) == ["0", "1"]


async def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    path.write_bytes(b"these are not the bytes of a SQLite database\n" * 200)
    with pytest.raises(QueueUnavailable, match="not a SQLite database") as caught:
        await SQLiteQueue.open(path)
    assert str(path) in str(caught.value)
    assert caught.value.hint and "move the file aside" in caught.value.hint


async def test_a_data_directory_that_is_a_file_is_refused_by_name(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    data = tmp_path / "data"
    data.write_text("I am a file\n")
    with pytest.raises(QueueUnavailable, match="is a file, not a directory") as caught:
        await connect_queue(make_settings(OPSCTL_DATA_DIR=str(data)))
    assert str(data) in str(caught.value)


async def test_the_settings_pick_the_queue_file_in_the_data_directory(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    queue = await connect_queue(settings)
    try:
        assert queue.backend == "sqlite"
        assert await queue.ping() < 1.0
    finally:
        await queue.close()
    assert settings.queue_sqlite_path.is_file()


async def test_a_lock_held_too_long_is_a_sentence_and_readers_are_not_held(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.db"
    async with await SQLiteQueue.open(path, busy_timeout_s=0.2) as queue:
        await queue.enqueue(NewJob("k", 1))
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            stats = await asyncio.wait_for(queue.stats(), 1)  # WAL: a reader does not wait
            assert stats.waiting == 1
            with pytest.raises(QueueUnavailable, match="stayed locked") as caught:
                await queue.enqueue(NewJob("k", 2))
            assert str(path) in str(caught.value)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await queue.stats()).waiting == 1, "the refused enqueue wrote nothing"


async def test_a_reserve_cancelled_mid_transaction_hands_its_jobs_back(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    async with await SQLiteQueue.open(path) as queue:
        job_id = await queue.enqueue(NewJob("k", 1))
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the reserve's thread waits on this lock
        task = asyncio.create_task(queue.reserve(1, owner="test", lease_s=30))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.sleep(0.05)
        blocker.execute("COMMIT")  # now the thread takes the job, and the cancel gives it back
        blocker.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        info = await queue.get(job_id)
        assert info is not None and (info.status, info.attempts) == ("ready", 0)
        (job,) = await queue.reserve(1, owner="test", lease_s=30)
        assert job.id == job_id and job.attempt == 1


async def test_finished_jobs_are_pruned_after_the_result_ttl(tmp_path: Path) -> None:
    # The queue's own clock, moved by hand: a busy machine cannot make the TTL pass early.
    now = [1_000_000.0]
    async with await SQLiteQueue.open(
        tmp_path / "queue.db", result_ttl_s=60, clock=lambda: now[0]
    ) as queue:
        job_id = await queue.enqueue(NewJob("k", 1))
        (job,) = await queue.reserve(1, owner="test", lease_s=30)
        assert await queue.complete([(job, "ok")]) == [True]
        now[0] += 59
        assert await queue.promote_due() == 0
        assert (await queue.get(job_id)) is not None, "kept until the TTL passes"
        now[0] += 2
        await queue.promote_due()
        assert await queue.get(job_id) is None


async def test_a_closed_queue_says_so(tmp_path: Path) -> None:
    queue = await SQLiteQueue.open(tmp_path / "queue.db")
    await queue.close()
    await queue.close()  # twice is fine
    with pytest.raises(QueueError, match="is closed"):
        await queue.enqueue(NewJob("k", 1))


async def test_due_delayed_work_and_stale_heartbeats_follow_the_queues_clock(
    tmp_path: Path,
) -> None:
    from opsctl.queue.base import Heartbeat

    now = [2_000_000.0]
    async with await SQLiteQueue.open(tmp_path / "queue.db", clock=lambda: now[0]) as queue:
        await queue.enqueue_many([NewJob("k", 1, delay_s=10), NewJob("k", 2, delay_s=20)])
        await queue.beat(Heartbeat("host:1", "worker", now[0]), ttl_s=15)
        now[0] += 9.5
        stats = await queue.stats()
        assert (stats.delayed, stats.delayed_due, stats.oldest_due_age_s) == (2, 0, 0.0)
        assert await queue.forget_heartbeats(["host:1"], only_stale=True) == []  # still live
        now[0] += 15.5  # 25 s in: both due, the first 15 s overdue; the heartbeat expired
        stats = await queue.stats()
        assert (stats.delayed, stats.delayed_due, stats.oldest_due_age_s) == (2, 2, 15.0)
        assert await queue.forget_heartbeats(["host:1"], only_stale=True) == ["host:1"]
        assert await queue.heartbeats(ttl_s=15) == []
