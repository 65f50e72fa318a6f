"""Where the rate limiter's budgets live: Redis for the fleet, or the queue's SQLite file.

On Redis an ask is one Lua script on the server clock (``opsctl/connectors/lua/``); on SQLite
it is one ``BEGIN IMMEDIATE`` transaction making the same decisions on the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from opsctl.connectors.limiter_budget import (
    KIND_CODES,
    Charge,
    ConnectorCounters,
    Grant,
    counters_from,
)
from opsctl.constants import (
    RATE_LIMIT_COUNTERS_KEY,
    RATE_LIMIT_KEY,
    RATE_LIMIT_LEASE_S,
    RATE_LIMIT_POLL_S,
)
from opsctl.errors import QueueError, QueueUnavailable
from opsctl.queue._sqlite import write_transaction
from opsctl.settings import Settings


class LimiterState(Protocol):
    """Where budgets live: Redis (the fleet) or the embedded SQLite queue file (one machine)."""

    round_trips: int
    """Calls to the backend so far (benchmarks check one per request)."""

    def key(self, connector: str, policy: str, scope: str) -> str:
        """Where one budget lives."""
        ...

    async def admit(
        self,
        connector: str,
        connection_pause: str,
        charges: Sequence[Charge],
        lease: str,
        released: Sequence[tuple[str, str]],
        horizon_s: float,
    ) -> Grant:
        """Charge every budget as of the earliest time all admit, if that is within
        ``horizon_s``, or none. ``released`` leases (lease set key, lease id) are given back
        first."""
        ...

    async def release(self, leases: Sequence[tuple[str, str]]) -> None: ...

    async def pause(
        self, connector: str, pause_keys: Sequence[str], seconds: float, *, throttled: bool
    ) -> None:
        """Pause these budgets for every worker (a running longer pause is kept)."""
        ...

    async def counters(self) -> dict[str, ConnectorCounters]: ...

    async def close(self) -> None: ...


@cache
def _lua(name: str) -> str:
    return resources.files("opsctl.connectors").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _fmt(value: float) -> str:
    return repr(float(value))


class RedisState:
    """Budgets on Redis: one Lua script an acquire, on the server's clock."""

    _SCRIPTS = ("acquire", "release", "pause", "counters")

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        where: str,
        owns_client: bool = False,
        lease_s: float = RATE_LIMIT_LEASE_S,
    ) -> None:
        self.prefix = prefix
        self.round_trips = 0
        self._client = client
        self._where = where
        self._owns = owns_client
        self._lease = _fmt(lease_s)
        self._counters_key = RATE_LIMIT_COUNTERS_KEY.format(prefix=prefix)
        self._scripts = {name: client.register_script(_lua(name)) for name in self._SCRIPTS}

    @classmethod
    async def open(
        cls, settings: Settings, *, client: Any = None, lease_s: float = RATE_LIMIT_LEASE_S
    ) -> RedisState:
        """Connect (or use ``client``, which stays the caller's), check Redis answers, load
        the scripts; :class:`QueueUnavailable` naming the address when it cannot."""
        from opsctl.connections import create_redis, verify_redis
        from opsctl.settings import redact_url

        owns = client is None
        if client is None:
            client = create_redis(settings)
        where = redact_url(settings.queue_redis_url) or "redis"
        try:
            await verify_redis(client, where)
            self = cls(
                client, prefix=settings.redis_prefix, where=where, owns_client=owns, lease_s=lease_s
            )
            async with self._errors(), client.pipeline(transaction=False) as pipe:
                for name in cls._SCRIPTS:
                    pipe.script_load(_lua(name))
                await pipe.execute()
        except BaseException:
            if owns:
                await client.aclose()
            raise
        return self

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        from opsctl.connections import describe_redis_error

        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise QueueUnavailable(
                "rate limiter: " + describe_redis_error(self._where, exc),
                hint="check QUEUE_REDIS_URL and that Redis runs",
            ) from exc
        except RedisError as exc:
            raise QueueError("rate limiter: " + describe_redis_error(self._where, exc)) from exc

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        self.round_trips += 1
        async with self._errors():
            return await self._scripts[name](keys=keys, args=args)

    def key(self, connector: str, policy: str, scope: str) -> str:
        return RATE_LIMIT_KEY.format(
            prefix=self.prefix, connector=connector, policy=policy, scope=scope
        )

    async def admit(
        self,
        connector: str,
        connection_pause: str,
        charges: Sequence[Charge],
        lease: str,
        released: Sequence[tuple[str, str]],
        horizon_s: float,
    ) -> Grant:
        keys = [self._counters_key, connection_pause]
        args: list[Any] = [connector, lease, self._lease, _fmt(RATE_LIMIT_POLL_S)]
        args += [_fmt(horizon_s), len(charges), len(released)]
        for charge in charges:
            keys += (charge.key, charge.pause_key)
        for lease_set, lease_id in released:
            keys.append(lease_set)
            args.append(lease_id)
        for c in charges:
            b = c.budget
            args += (KIND_CODES[b.kind], _fmt(b.capacity), _fmt(b.refill_per_s))
            args += (_fmt(b.window_s), _fmt(b.window_cap), b.max_in_flight, _fmt(c.cost))
        reply: bytes = await self._run("acquire", keys, args)
        if not reply:
            return Grant("now", 0.0)
        return Grant("reserved" if reply[:1] == b"r" else "wait", float(reply[1:]))

    async def release(self, leases: Sequence[tuple[str, str]]) -> None:
        if leases:
            await self._run("release", [k for k, _ in leases], [lease for _, lease in leases])

    async def pause(
        self, connector: str, pause_keys: Sequence[str], seconds: float, *, throttled: bool
    ) -> None:
        await self._run(
            "pause",
            [self._counters_key, *pause_keys],
            [connector, _fmt(seconds), "1" if throttled else "0"],
        )

    async def counters(self) -> dict[str, ConnectorCounters]:
        reply = await self._run("counters", [self._counters_key], [])
        now = float(reply[0])
        fields = {reply[i].decode(): float(reply[i + 1]) for i in range(1, len(reply) - 1, 2)}
        return counters_from(fields, now)

    async def close(self) -> None:
        if self._owns:
            self._owns = False
            await self._client.aclose()


_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rate_limit_budgets (
        key TEXT PRIMARY KEY, tokens REAL NOT NULL, ts REAL NOT NULL,
        ws REAL, cur REAL NOT NULL DEFAULT 0, prev REAL NOT NULL DEFAULT 0,
        expires_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rate_limit_leases (
        key TEXT NOT NULL, lease TEXT NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (key, lease))""",
    """CREATE TABLE IF NOT EXISTS rate_limit_pauses (
        key TEXT PRIMARY KEY, until REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rate_limit_counters (
        field TEXT PRIMARY KEY, value REAL NOT NULL)""",
)
_SQLITE_PRUNE_EVERY_S = 60.0


class SQLiteState:
    """Budgets in the embedded queue's SQLite file: one ``BEGIN IMMEDIATE`` transaction an
    acquire, on one private thread (as the queue does), so the processes of one machine that
    share the queue also share every budget. The clock is this machine's."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        executor: ThreadPoolExecutor,
        *,
        clock: Callable[[], float] = time.time,
        lease_s: float = RATE_LIMIT_LEASE_S,
    ) -> None:
        self.path = path
        self.round_trips = 0
        self._db = db
        self._executor = executor
        self._clock = clock
        self._lease_s = lease_s
        self._pruned_at = 0.0
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        lease_s: float = RATE_LIMIT_LEASE_S,
        busy_timeout_s: float = 30.0,
    ) -> SQLiteState:
        """Open the queue file at ``path`` (creating the limiter's tables)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opsctl-limiter")

        def connect() -> sqlite3.Connection:
            db = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
            try:
                db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                with contextlib.suppress(sqlite3.OperationalError):  # another process converts
                    db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                with write_transaction(db):
                    for statement in _SQLITE_SCHEMA:
                        db.execute(statement)
            except BaseException:
                db.close()
                raise
            return db

        try:
            db = await asyncio.get_running_loop().run_in_executor(executor, _guard(path, connect))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(db, path, executor, clock=clock, lease_s=lease_s)

    def key(self, connector: str, policy: str, scope: str) -> str:
        return RATE_LIMIT_KEY.format(prefix="", connector=connector, policy=policy, scope=scope)

    async def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._closed:
            raise QueueError(f"the rate limiter's SQLite state {self.path} is closed")
        self.round_trips += 1
        db = self._db

        def work() -> Any:
            with write_transaction(db):
                return fn(db)

        return await asyncio.get_running_loop().run_in_executor(
            self._executor, _guard(self.path, work)
        )

    async def admit(
        self,
        connector: str,
        connection_pause: str,
        charges: Sequence[Charge],
        lease: str,
        released: Sequence[tuple[str, str]],
        horizon_s: float,
    ) -> Grant:
        def admit(db: sqlite3.Connection) -> Grant:
            now = self._clock()
            if now - self._pruned_at > _SQLITE_PRUNE_EVERY_S:
                self._pruned_at = now
                db.execute("DELETE FROM rate_limit_budgets WHERE expires_at < ?", (now,))
                db.execute("DELETE FROM rate_limit_pauses WHERE until < ?", (now,))
            db.executemany(
                "DELETE FROM rate_limit_leases WHERE key = ? AND lease = ?", list(released)
            )
            return _admit_sqlite(
                db, now, connector, connection_pause, charges, lease, self._lease_s, horizon_s
            )

        result: Grant = await self._call(admit)
        return result

    async def release(self, leases: Sequence[tuple[str, str]]) -> None:
        if leases:
            await self._call(
                lambda db: db.executemany(
                    "DELETE FROM rate_limit_leases WHERE key = ? AND lease = ?", list(leases)
                )
            )

    async def pause(
        self, connector: str, pause_keys: Sequence[str], seconds: float, *, throttled: bool
    ) -> None:
        def pause(db: sqlite3.Connection) -> None:
            deadline = self._clock() + seconds
            db.executemany(
                "INSERT INTO rate_limit_pauses (key, until) VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET until = max(until, excluded.until)",
                [(key, deadline) for key in pause_keys],
            )
            _bump(db, f"{connector}:paused")
            if throttled:
                _bump(db, f"{connector}:throttled")
            db.execute(
                "INSERT INTO rate_limit_counters (field, value) VALUES (?, ?) ON CONFLICT (field) "
                "DO UPDATE SET value = max(value, excluded.value)",
                (f"{connector}:paused_until", deadline),
            )

        await self._call(pause)

    async def counters(self) -> dict[str, ConnectorCounters]:
        rows = await self._call(
            lambda db: db.execute("SELECT field, value FROM rate_limit_counters").fetchall()
        )
        return counters_from(dict(rows), self._clock())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)


def _guard(path: Path, fn: Callable[[], Any]) -> Callable[[], Any]:
    from opsctl.queue._sqlite import describe_sqlite_error

    def run() -> Any:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, path) from exc

    return run


def _bump(db: sqlite3.Connection, field: str) -> None:
    db.execute(
        "INSERT INTO rate_limit_counters (field, value) VALUES (?, 1) ON CONFLICT (field) "
        "DO UPDATE SET value = value + 1",
        (field,),
    )


def _admit_sqlite(
    db: sqlite3.Connection,
    now: float,
    connector: str,
    connection_pause: str,
    charges: Sequence[Charge],
    lease: str,
    lease_s: float,
    horizon_s: float,
) -> Grant:
    """acquire.lua in one SQLite transaction: the same decisions on the same state."""
    pause_keys = [connection_pause, *(c.pause_key for c in charges)]
    marks = ", ".join("?" * len(pause_keys))
    (until,) = db.execute(
        f"SELECT max(until) FROM rate_limit_pauses WHERE key IN ({marks})", pause_keys
    ).fetchone()
    at = max(now, until or now)
    poll: float | None = None
    buckets: list[_Bucket] = []
    for c in charges:
        b = c.budget
        if b.kind == "concurrency":
            db.execute(
                "DELETE FROM rate_limit_leases WHERE key = ? AND expires_at <= ?", (c.key, now)
            )
            held, first = db.execute(
                "SELECT count(*), min(expires_at) FROM rate_limit_leases WHERE key = ?", (c.key,)
            ).fetchone()
            if held >= b.max_in_flight:
                poll = max(poll or 0.0, min(first - now, RATE_LIMIT_POLL_S))
            continue
        row = db.execute(
            "SELECT tokens, ts, ws, cur, prev FROM rate_limit_budgets WHERE key = ? "
            "AND expires_at >= ?",
            (c.key, now),
        ).fetchone()
        buckets.append(_Bucket(c, *(row or (None, None, None, 0.0, 0.0))))
    settled = False
    for _ in range(64):
        latest = max((bucket.earliest(at) for bucket in buckets), default=at)
        if latest <= at:
            settled = True
            break
        at = latest
    wait = at - now
    if poll is not None or not settled or wait > horizon_s:
        _bump(db, f"{connector}:refused")
        return Grant("wait", max(wait, poll or 0.0))
    for c in charges:
        if c.budget.kind == "concurrency":
            db.execute(
                "INSERT OR REPLACE INTO rate_limit_leases (key, lease, expires_at)"
                " VALUES (?, ?, ?)",
                (c.key, lease, at + lease_s),
            )
    for bucket in buckets:
        db.execute(
            "INSERT OR REPLACE INTO rate_limit_budgets (key, tokens, ts, ws, cur, prev, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            bucket.charged(at, now),
        )
    _bump(db, f"{connector}:admitted")
    if wait > 0:
        _bump(db, f"{connector}:delayed")
        return Grant("reserved", wait)
    return Grant("now", 0.0)


@dataclass
class _Bucket:
    """One window or bucket policy's stored state, and the sums acquire.lua does on it."""

    charge: Charge
    tk: float | None
    ts: float | None
    ws: float | None
    cur: float
    prev: float

    def tokens(self, x: float) -> float:
        b = self.charge.budget
        if self.tk is None or self.ts is None:
            return b.capacity
        return min(b.capacity, self.tk + (x - self.ts) * b.refill_per_s)

    def counts(self, k: float) -> tuple[float, float]:
        if self.ws == k:
            return self.cur, self.prev
        if self.ws == k - 1:
            return 0.0, self.cur
        return 0.0, 0.0

    def earliest(self, x: float) -> float:
        """The first time from ``x`` when this policy admits the charge."""
        b, cost = self.charge.budget, self.charge.cost
        if self.ts is not None and x < self.ts:
            x = self.ts
        need = min(cost, b.capacity)
        have = self.tokens(x)
        if have < need:
            x += (need - have) / b.refill_per_s
        if b.window_s > 0:
            cap, win = max(b.window_cap, cost), b.window_s
            while True:
                k = float(math.floor(x / win))
                cur, prev = self.counts(k)
                if cur + cost > cap + 1e-9:
                    x = (k + 1) * win
                    continue
                elapsed = x - k * win
                sliding = b.kind == "sliding_window" and prev > 0
                if sliding and prev * (win - elapsed) / win + cur + cost > cap + 1e-9:
                    x = k * win + win * (1 - (cap - cur - cost) / prev)
                break
        return x

    def charged(self, at: float, now: float) -> tuple[Any, ...]:
        """The row after charging at ``at``: key, tokens, ts, ws, cur, prev, expires_at."""
        b, cost = self.charge.budget, self.charge.cost
        left = self.tokens(at) - cost
        ttl = (at - now) + (b.capacity - left) / b.refill_per_s
        ws, cur, prev = None, 0.0, 0.0
        if b.window_s > 0:
            ws = float(math.floor(at / b.window_s))
            cur, prev = self.counts(ws)
            cur += cost
            ttl = max(ttl, (ws + 2) * b.window_s - now)
        return (self.charge.key, left, at, ws, cur, prev, now + ttl + 1)


async def open_state(
    settings: Settings, *, lease_s: float = RATE_LIMIT_LEASE_S
) -> RedisState | SQLiteState:
    """The state the settings' queue names: Redis, or the embedded queue's SQLite file."""
    if settings.queue_backend == "redis":
        return await RedisState.open(settings, lease_s=lease_s)
    return await SQLiteState.open(settings.queue_sqlite_path, lease_s=lease_s)


__all__ = [
    "LimiterState",
    "RedisState",
    "SQLiteState",
    "open_state",
]
