"""The embedded SQLite queue: one file that several worker processes on one machine share.

Every read-modify-write is one ``BEGIN IMMEDIATE`` transaction, so two processes never hand out
the same job; WAL lets readers (stats, health) proceed beside a writer, and ``busy_timeout``
makes a second writer wait its turn instead of failing. Each queue object runs its SQLite work
on one private thread, one hop per operation (a whole transaction, not a statement), so the
event loop never blocks and the connection never changes threads.

Jobs live in one table whose ``status`` says which set they are in; partial indexes give each
set (ready, delayed, active, done, dead) its own ordered index. Fencing tokens come from one
counter in the file, so they grow across every job and every process.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from opsctl.constants import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    HEARTBEAT_FORGET_S,
    HEARTBEAT_RESERVED_IDS,
    IDEMPOTENCY_TTL_S,
    RESULT_TTL_S,
)
from opsctl.errors import QueueError, QueueUnavailable
from opsctl.queue.base import (
    DeferOutcome,
    FailOutcome,
    Heartbeat,
    HeartbeatView,
    Job,
    JobInfo,
    NewJob,
    QueueStats,
    check_positive,
    check_process_ids,
    new_job_id,
)

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0
COMPLETED_WINDOW_S = 60.0
POLL_FIRST_S = 0.001
POLL_MAX_S = 0.05
PRUNE_BATCH = 10_000
_IDS_PER_STATEMENT = 500  # well below SQLite's limit on bound parameters
_HEARTBEAT_FIELDS = frozenset(f.name for f in fields(Heartbeat))
_JOB_FIELDS = tuple(f.name for f in fields(JobInfo))  # the job columns carry JobInfo's names
_JOB_COLUMNS = ", ".join(_JOB_FIELDS)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS jobs (
        seq          INTEGER PRIMARY KEY,
        id           TEXT NOT NULL UNIQUE,
        queue        TEXT NOT NULL,
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        status       TEXT NOT NULL
                     CHECK (status IN ('ready', 'delayed', 'active', 'done', 'dead')),
        pos          REAL NOT NULL,  -- order among ready jobs; put-back jobs go below the rest
        ready_at     REAL,           -- when it last became ready: the oldest waiting age
        run_at       REAL,           -- when a delayed job is due
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        token        INTEGER NOT NULL DEFAULT 0,
        owner        TEXT,
        lease_until  REAL,
        created_at   REAL NOT NULL,
        started_at   REAL,
        finished_at  REAL,
        last_error   TEXT,
        result       TEXT,
        deferred_reason TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, pos, seq, ready_at)"
    " WHERE status = 'ready'",
    "CREATE INDEX IF NOT EXISTS jobs_delayed ON jobs (queue, run_at) WHERE status = 'delayed'",
    "CREATE INDEX IF NOT EXISTS jobs_active ON jobs (queue, lease_until) WHERE status = 'active'",
    "CREATE INDEX IF NOT EXISTS jobs_done ON jobs (finished_at, queue) WHERE status = 'done'",
    "CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (queue, finished_at) WHERE status = 'dead'",
    """
    CREATE TABLE IF NOT EXISTS idempotency (
        key        TEXT PRIMARY KEY,
        job_id     TEXT NOT NULL,
        expires_at REAL NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at)",
    "CREATE INDEX IF NOT EXISTS idempotency_job ON idempotency (job_id)",
    """
    CREATE TABLE IF NOT EXISTS heartbeats (
        id         TEXT PRIMARY KEY,
        body       TEXT NOT NULL,
        last_seen  REAL NOT NULL,
        expires_at REAL NOT NULL
    )
    """,
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('token', 0)",
)

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE jobs ADD COLUMN deferred_reason TEXT",),
}
"""Version → the statements that bring a file of the version before it up to it."""

_INSERT_JOB = (
    "INSERT INTO jobs (id, queue, kind, payload, status, pos, ready_at, run_at, max_attempts,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)


def describe_sqlite_error(
    exc: sqlite3.Error, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> QueueError:
    """One sentence naming the queue file and what is wrong with it."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return QueueUnavailable(
            f"the SQLite queue {path} stayed locked by another process for more than "
            f"{busy_timeout_s:g} s",
            hint="another process holds a long write; retry, or configure QUEUE_REDIS_URL",
        )
    if "not a database" in lowered or "malformed" in lowered:
        return QueueUnavailable(
            f"the SQLite queue {path} is not a SQLite database (or is damaged): {text}",
            hint="move the file aside; opsctl creates a new queue file on the next start",
        )
    if "unable to open" in lowered:
        return QueueUnavailable(
            f"cannot open the SQLite queue {path}: {text}",
            hint="check that the file and its directory exist and are writable",
        )
    if "readonly" in lowered or "read-only" in lowered:
        return QueueUnavailable(
            f"the SQLite queue {path} is read-only: {text}",
            hint="make the file and its directory writable for this user",
        )
    return QueueError(f"SQLite error on the queue {path}: {text}")


def _prepare_location(path: Path) -> None:
    """Create the queue file's directory; refuse a path that cannot hold a database file."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise QueueUnavailable(
            f"cannot create the SQLite queue {path}: {parent} (or a folder above it) is a file,"
            " not a directory",
            hint="point OPSCTL_DATA_DIR at a directory",
        ) from None
    except OSError as exc:
        raise QueueUnavailable(
            f"cannot create directory {parent} for the SQLite queue: {exc.strerror}",
            hint="point OPSCTL_DATA_DIR somewhere writable",
        ) from None
    if path.is_dir():
        raise QueueUnavailable(f"the SQLite queue path {path} is a directory, not a file")


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open the file in WAL mode and bring its schema to this version (safe to race)."""
    try:
        db = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise describe_sqlite_error(exc, path, busy_timeout_s) from exc
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        _switch_to_wal(db, busy_timeout_s)
        db.execute("PRAGMA synchronous = NORMAL")  # in WAL: durable across process crashes
        with write_transaction(db):
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise QueueError(
                    f"the SQLite queue {path} has schema version {version}, newer than this "
                    f"opsctl knows ({SCHEMA_VERSION})",
                    hint="upgrade opsctl, or move the file aside",
                )
            if version < SCHEMA_VERSION:
                # Version 0 is a new file, which _SCHEMA creates whole (the version is set in
                # the same transaction); an older one takes its migrations first.
                if version > 0:
                    for step in range(version + 1, SCHEMA_VERSION + 1):
                        for statement in _MIGRATIONS[step]:
                            db.execute(statement)
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.Error as exc:
        db.close()
        raise describe_sqlite_error(exc, path, busy_timeout_s) from exc
    except BaseException:
        db.close()
        raise
    return db


def _switch_to_wal(db: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Put the file in WAL mode. SQLite answers "locked" at once, without waiting on the busy
    timeout, while another process is converting the same new file, so retry for as long."""
    give_up = time.monotonic() + busy_timeout_s
    pause = POLL_FIRST_S
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > give_up:
                raise
        time.sleep(pause)
        pause = min(pause * 2, POLL_MAX_S)


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the file's write lock from its first statement."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextmanager
def _snapshot(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: several queries see one state of the file; writers are not held."""
    db.execute("BEGIN")
    try:
        yield db
    finally:
        db.execute("COMMIT")


def _dump(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise QueueError(f"{what} is not JSON-serialisable: {exc}") from None


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _check_time(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value)):
        raise QueueError(f"{name} must be a finite time, got {value!r}")


def _marks(ids: Sequence[str]) -> str:
    return ", ".join("?" * len(ids))


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _IDS_PER_STATEMENT):
        yield items[start : start + _IDS_PER_STATEMENT]


def _info(row: tuple[Any, ...]) -> JobInfo:
    values = dict(zip(_JOB_FIELDS, row, strict=True))
    values["payload"] = json.loads(values["payload"])
    values["result"] = _load(values["result"])
    return JobInfo(**values)


class SQLiteQueue:
    """One queue in a SQLite file (the development default; see :class:`QueueBackend`)."""

    backend: Literal["redis", "sqlite"] = "sqlite"

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        executor: ThreadPoolExecutor,
        *,
        queue: str = DEFAULT_QUEUE,
        clock: Callable[[], float] = time.time,
        result_ttl_s: float = RESULT_TTL_S,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
    ):
        self.queue = queue
        self.path = path
        self._db: sqlite3.Connection | None = db
        self._executor = executor
        self._clock = clock
        self._result_ttl_s = result_ttl_s
        self._busy_timeout_s = busy_timeout_s

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        queue: str = DEFAULT_QUEUE,
        clock: Callable[[], float] = time.time,
        result_ttl_s: float = RESULT_TTL_S,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
    ) -> SQLiteQueue:
        """Open (creating if needed) the queue file at ``path``; the caller closes it.

        ``busy_timeout_s`` is how long a write waits for another process's write lock before
        :class:`QueueUnavailable`; finished jobs' results are kept ``result_ttl_s``.
        """
        if not queue:
            raise QueueError("a queue needs a name")
        _prepare_location(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opsctl-sqlite-queue")
        try:
            db = await asyncio.get_running_loop().run_in_executor(
                executor, _connect, path, busy_timeout_s
            )
            return cls(
                db,
                path,
                executor,
                queue=queue,
                clock=clock,
                result_ttl_s=result_ttl_s,
                busy_timeout_s=busy_timeout_s,
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise

    async def __aenter__(self) -> SQLiteQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the queue's thread; SQLite errors come back as sentences."""
        if self._db is None:
            raise QueueError(f"the SQLite queue {self.path} is closed")
        work = partial(self._guard, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _guard(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, self.path, self._busy_timeout_s) from exc

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise QueueError(f"the SQLite queue {self.path} is closed")
        return self._db

    def _front(self, db: sqlite3.Connection, count: int) -> float:
        """The first of ``count`` positions ahead of every ready job of this queue."""
        (low,) = db.execute(
            "SELECT min(pos) FROM jobs WHERE queue = ? AND status = 'ready'", (self.queue,)
        ).fetchone()
        return min(0.0, low if low is not None else 0.0) - count

    # -- producing ---------------------------------------------------------------------------

    async def enqueue(self, job: NewJob) -> str:
        """Add one job; return its id (the existing id for a repeated idempotency key/id)."""
        (job_id,) = await self._call(self._enqueue, [job])
        return job_id

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[str]:
        """Add many jobs in one transaction. Every job is checked first, so a payload that is
        not JSON-serialisable raises :class:`QueueError` and adds nothing."""
        if not jobs:
            return []
        return await self._call(self._enqueue, list(jobs))

    def _row(self, job: NewJob, now: float) -> tuple[Any, ...]:
        if not isinstance(job.kind, str) or not job.kind:
            raise QueueError(f"a job needs a kind (a non-empty string), got {job.kind!r}")
        payload = _dump(job.payload, f"the payload of a {job.kind!r} job")
        max_attempts = DEFAULT_MAX_ATTEMPTS if job.max_attempts is None else job.max_attempts
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise QueueError(f"max_attempts of a {job.kind!r} job must be at least 1")
        if job.job_id is not None and not job.job_id:
            raise QueueError(f"a {job.kind!r} job has an empty job_id")
        if job.run_at is not None and job.delay_s is not None:
            raise QueueError(f"a {job.kind!r} job has both delay_s and run_at; give one")
        run_at = None
        if job.run_at is not None:
            _check_time(f"run_at of a {job.kind!r} job", job.run_at)
            run_at = job.run_at
        elif job.delay_s is not None:
            _check_time(f"delay_s of a {job.kind!r} job", job.delay_s)
            run_at = now + job.delay_s
        job_id = job.job_id or new_job_id()
        if run_at is not None and run_at > now:
            status, pos, ready_at = "delayed", run_at, None
        else:
            status, pos, ready_at, run_at = "ready", now, now, None
        return (
            job_id,
            self.queue,
            job.kind,
            payload,
            status,
            pos,
            ready_at,
            run_at,
            max_attempts,
            now,
        )

    def _enqueue(self, jobs: list[NewJob]) -> list[str]:
        now = self._clock()
        # Check and serialise everything first: one bad job anywhere enqueues nothing.
        rows = [self._row(job, now) for job in jobs]
        ids: list[str] = []
        plain: list[tuple[Any, ...]] = []
        with write_transaction(self._conn) as db:
            for job, row in zip(jobs, rows, strict=True):
                if job.idempotency_key is None and job.job_id is None:
                    plain.append(row)
                    ids.append(row[0])
                    continue
                if plain:  # keeps the order of insertion: the plain jobs before this one
                    db.executemany(_INSERT_JOB, plain)
                    plain = []
                ids.append(self._insert_deduplicated(db, job.idempotency_key, row, now))
            if plain:
                db.executemany(_INSERT_JOB, plain)
        return ids

    @staticmethod
    def _insert_deduplicated(
        db: sqlite3.Connection, key: str | None, row: tuple[Any, ...], now: float
    ) -> str:
        if key is not None:
            found = db.execute(
                "SELECT job_id FROM idempotency WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            if found is not None:
                return str(found[0])
        job_id = str(row[0])
        db.execute(_INSERT_JOB, row)  # a job that exists under this id stays as it is
        if key is not None:
            db.execute(
                "INSERT OR REPLACE INTO idempotency (key, job_id, expires_at) VALUES (?, ?, ?)",
                (key, job_id, now + IDEMPOTENCY_TTL_S),
            )
        return job_id

    # -- consuming ---------------------------------------------------------------------------

    async def reserve(
        self, count: int, *, owner: str, lease_s: float, wait_s: float = 0.0
    ) -> list[Job]:
        """Take up to ``count`` ready jobs under a lease in one transaction; when none is
        ready, poll (1 ms, backing off to 50 ms) up to ``wait_s`` for the first."""
        if not isinstance(count, int) or count <= 0:
            raise QueueError(f"reserve needs a count of at least 1, got {count!r}")
        check_positive("lease_s", lease_s)
        if not (math.isfinite(wait_s) and wait_s >= 0):
            raise QueueError(f"wait_s must be zero or more seconds, got {wait_s!r}")
        give_up = time.monotonic() + wait_s
        pause = POLL_FIRST_S
        while True:
            jobs = await self._reserve_once(count, owner, lease_s)
            remaining = give_up - time.monotonic()
            if jobs or remaining < 0.001:
                return jobs
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, POLL_MAX_S)

    async def _reserve_once(self, count: int, owner: str, lease_s: float) -> list[Job]:
        task = asyncio.ensure_future(self._call(self._take, count, owner, lease_s))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The thread finishes its transaction regardless: hand back what it took, uncounted,
            # rather than leave those jobs to wait out their lease.
            with suppress(Exception):
                taken = await task
                if taken:
                    await self.release(taken)
            raise

    def _take(self, count: int, owner: str, lease_s: float) -> list[Job]:
        db = self._conn
        # A plain read first: idle workers polling an empty queue never take the write lock.
        probe = "SELECT 1 FROM jobs WHERE queue = ? AND status = 'ready' LIMIT 1"
        if db.execute(probe, (self.queue,)).fetchone() is None:
            return []
        with write_transaction(db):
            seqs = db.execute(
                "SELECT seq FROM jobs WHERE queue = ? AND status = 'ready'"
                " ORDER BY pos, seq LIMIT ?",
                (self.queue, count),
            ).fetchall()
            if not seqs:
                return []
            (last,) = db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'token' RETURNING value",
                (len(seqs),),
            ).fetchone()
            now = self._clock()
            lease_until = now + lease_s
            jobs = []
            for token, (seq,) in enumerate(seqs, start=last - len(seqs) + 1):
                job_id, kind, payload, attempt, max_attempts, created_at = db.execute(
                    "UPDATE jobs SET status = 'active', token = ?, attempts = attempts + 1,"
                    " owner = ?, lease_until = ?, started_at = ? WHERE seq = ?"
                    " RETURNING id, kind, payload, attempts, max_attempts, created_at",
                    (token, owner, lease_until, now, seq),
                ).fetchone()
                jobs.append(
                    Job(
                        id=job_id,
                        kind=kind,
                        payload=json.loads(payload),
                        queue=self.queue,
                        attempt=attempt,
                        max_attempts=max_attempts,
                        token=token,
                        enqueued_at=created_at,
                        lease_until=lease_until,
                    )
                )
        return jobs

    async def renew(self, jobs: Sequence[Job], *, lease_s: float) -> list[str]:
        """Extend every lease in one transaction; return the ids whose lease was lost."""
        check_positive("lease_s", lease_s)
        if not jobs:
            return []
        return await self._call(self._renew, list(jobs), lease_s)

    def _renew(self, jobs: list[Job], lease_s: float) -> list[str]:
        lost = []
        with write_transaction(self._conn) as db:
            lease_until = self._clock() + lease_s
            for job in jobs:
                cursor = db.execute(
                    "UPDATE jobs SET lease_until = ?"
                    " WHERE id = ? AND token = ? AND status = 'active'",
                    (lease_until, job.id, job.token),
                )
                if cursor.rowcount != 1:
                    lost.append(job.id)
        return lost

    async def complete(self, outcomes: Sequence[tuple[Job, Any]]) -> list[bool]:
        """Acknowledge jobs with their results in one transaction; False for each stale token.
        A result that is not JSON-serialisable raises QueueError before anything is written."""
        if not outcomes:
            return []
        return await self._call(self._complete, list(outcomes))

    def _complete(self, outcomes: list[tuple[Job, Any]]) -> list[bool]:
        rows = [
            (_dump(result, f"the result of {job.kind!r} job {job.id}"), job.id, job.token)
            for job, result in outcomes
        ]
        done = []
        with write_transaction(self._conn) as db:
            now = self._clock()
            for result, job_id, token in rows:
                cursor = db.execute(
                    "UPDATE jobs SET status = 'done', result = ?, finished_at = ?,"
                    " owner = NULL, lease_until = NULL"
                    " WHERE id = ? AND token = ? AND status = 'active'",
                    (result, now, job_id, token),
                )
                done.append(cursor.rowcount == 1)
        return done

    async def fail(self, job: Job, error: str, *, retry_at: float | None) -> FailOutcome:
        """Record a failed run: retry at ``retry_at`` through the delayed set, or dead-letter
        it past the attempt limit or when ``retry_at`` is None; ``stale`` for an old token."""
        if retry_at is not None:
            _check_time("retry_at", retry_at)
        return await self._call(self._fail, job, str(error), retry_at)

    def _fail(self, job: Job, error: str, retry_at: float | None) -> FailOutcome:
        with write_transaction(self._conn) as db:
            row = db.execute(
                "SELECT attempts, max_attempts FROM jobs"
                " WHERE id = ? AND token = ? AND status = 'active'",
                (job.id, job.token),
            ).fetchone()
            if row is None:
                return "stale"
            attempts, max_attempts = row
            if retry_at is None or attempts >= max_attempts:
                db.execute(
                    "UPDATE jobs SET status = 'dead', finished_at = ?, last_error = ?,"
                    " owner = NULL, lease_until = NULL WHERE id = ?",
                    (self._clock(), error, job.id),
                )
                return "dead"
            db.execute(
                "UPDATE jobs SET status = 'delayed', run_at = ?, last_error = ?,"
                " owner = NULL, lease_until = NULL WHERE id = ?",
                (retry_at, error, job.id),
            )
            return "retry"

    async def defer(self, job: Job, *, run_at: float, reason: str | None = None) -> DeferOutcome:
        """Put the job in the delayed set until ``run_at`` with its run given back, in one
        transaction; ``stale`` for an old token (nothing changed)."""
        _check_time("run_at", run_at)
        return await self._call(self._defer, job, run_at, str(reason) if reason else None)

    def _defer(self, job: Job, run_at: float, reason: str | None) -> DeferOutcome:
        with write_transaction(self._conn) as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'delayed', run_at = ?, deferred_reason = ?,"
                " attempts = max(attempts - 1, 0), owner = NULL, lease_until = NULL"
                " WHERE id = ? AND token = ? AND status = 'active'",
                (run_at, reason, job.id, job.token),
            )
        return "deferred" if cursor.rowcount == 1 else "stale"

    async def release(self, jobs: Sequence[Job]) -> None:
        """Put unfinished jobs back at the front, in their order; the run does not count."""
        if jobs:
            await self._call(self._release, list(jobs))

    def _release(self, jobs: list[Job]) -> None:
        with write_transaction(self._conn) as db:
            now = self._clock()
            first = self._front(db, len(jobs))
            db.executemany(
                "UPDATE jobs SET status = 'ready', attempts = max(attempts - 1, 0), pos = ?,"
                " ready_at = ?, owner = NULL, lease_until = NULL"
                " WHERE id = ? AND token = ? AND status = 'active'",
                [(first + i, now, job.id, job.token) for i, job in enumerate(jobs)],
            )

    # -- timers ------------------------------------------------------------------------------

    async def promote_due(self, limit: int = 1000) -> int:
        """Move delayed jobs whose time has come to ready, oldest due first; also forget
        results older than the result TTL and expired idempotency keys."""
        check_positive("limit", limit)
        return await self._call(self._promote_due, limit)

    def _promote_due(self, limit: int) -> int:
        with write_transaction(self._conn) as db:
            now = self._clock()
            moved = db.execute(
                "UPDATE jobs SET status = 'ready', pos = run_at, ready_at = ?"
                " WHERE seq IN (SELECT seq FROM jobs WHERE queue = ? AND status = 'delayed'"
                " AND run_at <= ? ORDER BY run_at LIMIT ?)",
                (now, self.queue, now, limit),
            ).rowcount
            db.execute(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE status = 'done'"
                " AND finished_at < ? LIMIT ?)",
                (now - self._result_ttl_s, PRUNE_BATCH),
            )
            db.execute(
                "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency"
                " WHERE expires_at <= ? LIMIT ?)",
                (now, PRUNE_BATCH),
            )
        return moved

    async def requeue_expired(self, limit: int = 1000) -> int:
        """Put jobs whose lease lapsed back at the front of ready (or dead past the limit);
        the lapsed run counts. Returns how many moved."""
        check_positive("limit", limit)
        return await self._call(self._requeue_expired, limit)

    def _requeue_expired(self, limit: int) -> int:
        with write_transaction(self._conn) as db:
            now = self._clock()
            lapsed = db.execute(
                "SELECT seq, attempts, max_attempts, owner FROM jobs"
                " WHERE queue = ? AND status = 'active' AND lease_until < ?"
                " ORDER BY lease_until LIMIT ?",
                (self.queue, now, limit),
            ).fetchall()
            position = self._front(db, len(lapsed))
            for seq, attempts, max_attempts, owner in lapsed:
                if attempts >= max_attempts:
                    error = (
                        f"lease expired on run {attempts} of {max_attempts}: worker "
                        f"{owner or '?'} stopped renewing it"
                    )
                    db.execute(
                        "UPDATE jobs SET status = 'dead', finished_at = ?, last_error = ?,"
                        " owner = NULL, lease_until = NULL WHERE seq = ?",
                        (now, error, seq),
                    )
                else:
                    db.execute(
                        "UPDATE jobs SET status = 'ready', pos = ?, ready_at = ?,"
                        " owner = NULL, lease_until = NULL WHERE seq = ?",
                        (position, now, seq),
                    )
                    position += 1
        return len(lapsed)

    # -- inspection --------------------------------------------------------------------------

    async def stats(self) -> QueueStats:
        """Counts of every state from one snapshot; the waiting age is the oldest ready job's,
        counted from when it became ready."""
        return await self._call(self._stats)

    def _stats(self) -> QueueStats:
        with _snapshot(self._conn) as db:
            now = self._clock()

            def one(sql: str, *args: Any) -> Any:
                return db.execute(sql, (self.queue, *args)).fetchone()

            waiting, oldest = one(
                "SELECT count(*), min(ready_at) FROM jobs WHERE queue = ? AND status = 'ready'"
            )
            (delayed,) = one("SELECT count(*) FROM jobs WHERE queue = ? AND status = 'delayed'")
            # The due head of the delayed index: what a timers daemon should have promoted.
            due, most_overdue = one(
                "SELECT count(*), min(run_at) FROM jobs"
                " WHERE queue = ? AND status = 'delayed' AND run_at <= ?",
                now,
            )
            (active,) = one("SELECT count(*) FROM jobs WHERE queue = ? AND status = 'active'")
            (dead,) = one("SELECT count(*) FROM jobs WHERE queue = ? AND status = 'dead'")
            (completed,) = one(
                "SELECT count(*) FROM jobs"
                " WHERE queue = ? AND status = 'done' AND finished_at >= ?",
                now - COMPLETED_WINDOW_S,
            )
        return QueueStats(
            backend="sqlite",
            waiting=waiting,
            delayed=delayed,
            active=active,
            failed=dead,
            oldest_waiting_age_s=0.0 if oldest is None else max(0.0, now - oldest),
            completed_last_minute=completed,
            delayed_due=due,
            oldest_due_age_s=0.0 if most_overdue is None else max(0.0, now - most_overdue),
        )

    async def get(self, job_id: str) -> JobInfo | None:
        return await self._call(self._get, job_id)

    def _get(self, job_id: str) -> JobInfo | None:
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?"
        row = self._conn.execute(sql, (job_id,)).fetchone()
        return None if row is None else _info(row)

    async def dead(self, limit: int = 100) -> list[JobInfo]:
        """Dead-lettered jobs, newest first."""
        check_positive("limit", limit)
        return await self._call(self._dead, limit)

    def _dead(self, limit: int) -> list[JobInfo]:
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE queue = ? AND status = 'dead'"
            " ORDER BY finished_at DESC, seq DESC LIMIT ?",
            (self.queue, limit),
        ).fetchall()
        return [_info(row) for row in rows]

    # -- the dead-letter set -----------------------------------------------------------------

    async def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        """Move dead jobs (all, or these) to the back of ready with a fresh attempt count."""
        return await self._call(self._retry_dead, None if ids is None else list(ids))

    def _retry_dead(self, ids: list[str] | None) -> int:
        update = (
            "UPDATE jobs SET status = 'ready', attempts = 0, pos = ?, ready_at = ?,"
            " finished_at = NULL WHERE queue = ? AND status = 'dead'"
        )
        with write_transaction(self._conn) as db:
            now = self._clock()
            if ids is None:
                return db.execute(update, (now, now, self.queue)).rowcount
            return sum(
                db.execute(f"{update} AND id IN ({_marks(c)})", (now, now, self.queue, *c)).rowcount
                for c in _chunks(ids)
            )

    async def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead jobs (all, or these) for good, with their idempotency keys."""
        return await self._call(self._purge_dead, None if ids is None else list(ids))

    def _purge_dead(self, ids: list[str] | None) -> int:
        where = "queue = ? AND status = 'dead'"
        with write_transaction(self._conn) as db:
            batches: list[tuple[str, tuple[str, ...]]]
            if ids is None:
                batches = [(where, (self.queue,))]
            else:
                batches = [
                    (f"{where} AND id IN ({_marks(c)})", (self.queue, *c)) for c in _chunks(ids)
                ]
            purged = 0
            for condition, args in batches:
                owned = f"SELECT id FROM jobs WHERE {condition}"
                db.execute(f"DELETE FROM idempotency WHERE job_id IN ({owned})", args)
                purged += db.execute(f"DELETE FROM jobs WHERE {condition}", args).rowcount
            return purged

    # -- heartbeats --------------------------------------------------------------------------

    async def beat(self, heartbeat: Heartbeat, *, ttl_s: float) -> None:
        """Write this process's heartbeat under its own row, live for ``ttl_s``."""
        check_positive("ttl_s", ttl_s)
        if not heartbeat.id or heartbeat.id in HEARTBEAT_RESERVED_IDS:
            raise QueueError(f"a heartbeat needs a process id like host:pid, got {heartbeat.id!r}")
        body = _dump(asdict(heartbeat), f"the heartbeat of {heartbeat.id}")
        await self._call(self._beat, heartbeat.id, body, ttl_s)

    def _beat(self, process_id: str, body: str, ttl_s: float) -> None:
        now = self._clock()
        # One statement is its own transaction; busy_timeout queues it behind other writers.
        self._conn.execute(
            "INSERT INTO heartbeats (id, body, last_seen, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET body = excluded.body,"
            " last_seen = excluded.last_seen, expires_at = excluded.expires_at",
            (process_id, body, now, now + ttl_s),
        )

    async def remove_heartbeat(self, process_id: str) -> None:
        """Delete a heartbeat (on clean exit)."""
        await self._call(self._remove_heartbeat, process_id)

    def _remove_heartbeat(self, process_id: str) -> None:
        self._conn.execute("DELETE FROM heartbeats WHERE id = ?", (process_id,))

    async def forget_heartbeats(
        self, process_ids: Sequence[str], *, only_stale: bool = False
    ) -> list[str]:
        """Forget processes' heartbeats in one transaction; returns the ids that were known.
        With ``only_stale``, one whose heartbeat has not expired is kept."""
        ids = check_process_ids(process_ids)
        if not ids:
            return []
        return await self._call(self._forget_heartbeats, ids, only_stale)

    def _forget_heartbeats(self, ids: list[str], only_stale: bool) -> list[str]:
        known: set[str] = set()
        with write_transaction(self._conn) as db:
            now = self._clock()
            for chunk in _chunks(ids):
                where = f"id IN ({_marks(chunk)})"
                args: tuple[Any, ...] = tuple(chunk)
                if only_stale:
                    where += " AND expires_at <= ?"
                    args += (now,)
                found = db.execute(f"SELECT id FROM heartbeats WHERE {where}", args).fetchall()
                db.execute(f"DELETE FROM heartbeats WHERE {where}", args)
                known.update(process_id for (process_id,) in found)
        return [process_id for process_id in ids if process_id in known]

    async def heartbeats(self, *, ttl_s: float) -> list[HeartbeatView]:
        """Every process seen in the last hour: live while its own TTL runs and its last beat
        is younger than ``ttl_s``, stale after."""
        check_positive("ttl_s", ttl_s)
        return await self._call(self._heartbeats, ttl_s)

    def _heartbeats(self, ttl_s: float) -> list[HeartbeatView]:
        db = self._conn
        now = self._clock()
        forget_before = now - HEARTBEAT_FORGET_S
        rows = db.execute(
            "SELECT body, last_seen, expires_at FROM heartbeats ORDER BY last_seen"
        ).fetchall()
        if rows and rows[0][1] < forget_before:  # only then take the write lock
            db.execute("DELETE FROM heartbeats WHERE last_seen < ?", (forget_before,))
        views = []
        for body, last_seen, expires_at in rows:
            if last_seen < forget_before:
                continue
            data = json.loads(body)
            heartbeat = Heartbeat(**{k: v for k, v in data.items() if k in _HEARTBEAT_FIELDS})
            age = max(0.0, now - last_seen)
            views.append(HeartbeatView(heartbeat, last_seen, age, now < expires_at and age < ttl_s))
        return views

    # -- connection --------------------------------------------------------------------------

    async def ping(self) -> float:
        """Seconds for one trivial query through the queue's thread."""
        started = time.perf_counter()
        await self._call(self._ping)
        return time.perf_counter() - started

    def _ping(self) -> None:
        self._conn.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        if self._db is None:
            return
        db, self._db = self._db, None
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        finally:
            self._executor.shutdown(wait=True)
