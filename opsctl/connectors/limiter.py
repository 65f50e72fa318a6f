"""The shared vendor rate limiter: one budget per connector, policy and scope for the whole fleet.

:class:`SharedLimiter` is the executor's :class:`~opsctl.connectors.executor.Limiter`. Every
request asks it before it goes out; the answer covers every policy that matches the request at
once (AND): the earliest time when all admit. Now: each is charged, go. Within the
definition's ``retry.max_wait_s``: each is charged as of that time (a reservation), and the
executor, after waiting, is admitted here without asking the state again. Later, or while a
concurrency policy is full: nothing is charged, and the wait comes back (past the cap the
executor reschedules the execution through the delayed set). On Redis an ask is one Lua script
on the server clock (``opsctl/connectors/lua/acquire.lua``), so every worker on every machine
draws from one budget in one round trip a request; on the embedded SQLite queue it is one
``BEGIN IMMEDIATE`` transaction in the queue's own file (the processes of one machine share it,
as they share the queue; the store may be PostgreSQL or another machine's).

Budgets are the fleet figures of DESIGN.md §6 (:mod:`opsctl.connectors.ratelimits`; f = 0.8,
b = 0.2), in the policy's units:

- ``fixed_window`` / ``sliding_window`` of L per W s: a bucket of ``C = floor(0.8·L·0.2)``
  refilling ``r = 0.8·L·0.8/W`` per second, so no span of W sees more than 0.8·L; the window's
  own count is also kept under ``floor(0.8·L)``, per aligned window (fixed) or by the
  two-window approximation (sliding: the previous window's count weighted by the share of it
  still inside the sliding span), a hard cap by the vendor's own rule.
- ``token_bucket``: ``C = floor(0.8·capacity)``, ``r = 0.8·refill_per_s``.
- ``concurrency``: ``max(1, floor(0.8·max_in_flight))`` leases, each expiring after
  ``RATE_LIMIT_LEASE_S`` so a killed worker's lease lapses; a finished request gives its lease
  back on its process's next ask (or alone within a few milliseconds).
- Costs: a request uses ``operation.costs[policy]``, else ``policy.cost``. A bucket admits when
  it holds ``min(cost, C)`` and may go into debt, so a cost above the burst still goes out, at
  the long-run rate.

Admissions on one budget are made in time order (a reservation is never overtaken), which
keeps the bucket's bound exact. A throttle signal from the vendor (a throttle status,
``Retry-After``, a reset header with the remaining count at zero, IETF ``RateLimit`` /
``RateLimit-Policy``) pauses every budget the request drew on, for every worker: each ask
checks the pause keys, so later admissions start after the pause. Counters per connector
(admitted, delayed, refused, throttled, paused) live beside the budgets, for the heartbeat and
``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import random
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from multidict import CIMultiDict, CIMultiDictProxy
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from opsctl.connectors.executor import RequestScope
from opsctl.connectors.executor_http import parse_reset, parse_retry_after
from opsctl.connectors.model import Definition, Operation, RateLimitPolicy, RateLimitSignals
from opsctl.connectors.ratelimits import (
    SAFETY_FACTOR,
    concurrency_cap,
    exact,
    token_bucket,
    window_bucket,
)
from opsctl.constants import (
    RATE_LIMIT_COUNTERS_KEY,
    RATE_LIMIT_DEFAULT_PAUSE_S,
    RATE_LIMIT_FALLBACK_PAUSE_CAP_S,
    RATE_LIMIT_KEY,
    RATE_LIMIT_LEASE_S,
    RATE_LIMIT_MAX_PAUSE_S,
    RATE_LIMIT_PAUSE_SUFFIX,
    RATE_LIMIT_POLL_S,
    RATE_LIMIT_RELEASE_FLUSH_S,
    RATE_LIMIT_RESERVATION_GRACE_S,
)
from opsctl.errors import ConfigError, QueueError, QueueUnavailable
from opsctl.queue._sqlite import write_transaction
from opsctl.settings import Settings

log = logging.getLogger("opsctl.connectors.limiter")

_KIND_CODES: Final = {
    "fixed_window": "f",
    "sliding_window": "s",
    "token_bucket": "b",
    "concurrency": "c",
}
_NO_POLICY: Final = "~"


# --- budgets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """What the limiter enforces for one policy across the whole fleet."""

    kind: str
    capacity: float = 0.0
    """Burst: units the bucket holds when full."""
    refill_per_s: float = 0.0
    window_s: float = 0.0
    """Window kinds: the vendor's window, whose count stays under ``window_cap``."""
    window_cap: float = 0.0
    max_in_flight: int = 0


def fleet_budget(policy: RateLimitPolicy) -> Budget:
    """The fleet-level budget of DESIGN.md §6 for ``policy``, by the derivation's own formulas
    (:mod:`opsctl.connectors.ratelimits`), so what ``opsctl rate-limits`` shows is what is
    enforced. Budgets are in the policy's units (a request is charged its cost). A policy
    without its kind's figures, or with a zero window, is a :class:`ConfigError`.
    """
    where = f"rate-limit policy {policy.id!r}"
    if policy.kind in ("fixed_window", "sliding_window"):
        if policy.limit is None or not policy.window_s or policy.window_s <= 0:
            raise ConfigError(f"{where} needs a limit and a window above zero")
        capacity, rate = window_bucket(policy.limit, policy.window_s)
        return Budget(
            policy.kind,
            capacity=float(capacity),
            refill_per_s=float(rate),
            window_s=float(policy.window_s),
            window_cap=float(math.floor(SAFETY_FACTOR * exact(policy.limit))),
        )
    if policy.kind == "token_bucket":
        if not policy.capacity or not policy.refill_per_s or policy.refill_per_s <= 0:
            raise ConfigError(f"{where} needs a capacity and a refill_per_s above zero")
        capacity, rate = token_bucket(policy.capacity, policy.refill_per_s)
        return Budget(policy.kind, capacity=float(capacity), refill_per_s=float(rate))
    if policy.kind == "concurrency":
        if not policy.max_in_flight or policy.max_in_flight < 1:
            raise ConfigError(f"{where} needs max_in_flight of at least 1")
        # One lease at least: a vendor allowing one request at a time still gets one.
        return Budget(policy.kind, max_in_flight=max(1, concurrency_cap(policy.max_in_flight, 1)))
    raise ConfigError(f"{where} has an unknown kind {policy.kind!r}")


# --- whose budget a request draws on -----------------------------------------------------


def scope_value(
    name: str, definition: Definition, operation: Operation, scope: RequestScope
) -> str:
    """The value that names one budget for scope ``name`` (docs/connectors.md, ``scope``).

    ``credential``: the key's digest, or the connection for OAuth (its access token changes
    on every refresh); ``user``: the connection; ``account``: the connection's config (the
    shop, org or base), else the connection; ``app``, ``project``: one per connector (one
    registered client); ``ip``: one for the fleet, the safe side when machines share an
    address; ``endpoint``: method and path template; ``method``: the path template (a Slack
    method).
    """
    who = scope.connection_id or scope.credential_id or ""
    if name == "credential":
        if definition.auth.type == "oauth2":
            return who
        return scope.credential_id or who
    if name == "user":
        return who
    if name == "account":
        if scope.config:
            return json.dumps(scope.config, sort_keys=True, separators=(",", ":"), default=str)
        return who
    if name == "endpoint":
        return f"{operation.method} {operation.path}"
    if name == "method":
        return operation.path
    return ""


def _digest(parts: Sequence[str]) -> str:
    if not parts:
        return "all"
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Charge:
    """One policy's part in admitting a request: its budget key and what the request costs."""

    policy: str
    key: str
    budget: Budget
    cost: float

    @property
    def pause_key(self) -> str:
        return self.key + RATE_LIMIT_PAUSE_SUFFIX


@dataclass(frozen=True)
class Grant:
    """A state's answer: ``now`` (go), ``reserved`` (charged as of ``wait_s`` from now: go
    then, without asking again) or ``wait`` (nothing charged: ask again after ``wait_s``)."""

    outcome: Literal["now", "reserved", "wait"]
    wait_s: float


# --- vendor signals ----------------------------------------------------------------------


@dataclass(frozen=True)
class VendorPause:
    """How long a vendor's answer says to stop sending, and whether it refused the request."""

    seconds: float
    throttled: bool
    reason: str


def _headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers
    return CIMultiDict(headers)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip().strip('"'))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _split(text: str, sep: str) -> list[str]:
    """Split a structured field on ``sep`` outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _sf_list(text: str) -> list[tuple[str, dict[str, str]]]:
    """An RFC 8941 list of items with parameters, leniently: ``"a";r=0;t=5, "b";r=9``."""
    items = []
    for member in _split(text, ","):
        head, *params = _split(member, ";")
        values = {}
        for param in params:
            key, _, value = param.partition("=")
            values[key.strip().lower()] = value.strip().strip('"')
        items.append((head.strip('"'), values))
    return items


def ietf_exhausted(headers: Mapping[str, str]) -> tuple[bool, float | None]:
    """Whether IETF rate-limit headers say a quota is used up, and the seconds to its reset.

    Reads draft-ietf-httpapi-ratelimit-headers in its forms: ``RateLimit: "q";r=0;t=30`` with
    ``RateLimit-Policy: "q";q=100;w=60`` (the window stands in for a missing ``t``), the
    dictionary ``RateLimit: limit=100, remaining=0, reset=30``, and the separate
    ``RateLimit-Remaining`` / ``RateLimit-Reset`` fields.
    """
    h = _headers(headers)
    found: list[tuple[float, float | None, str]] = []
    combined = h.get("RateLimit")
    if combined:
        items = _sf_list(combined)
        if items and all("=" in name for name, _ in items):  # the dictionary form
            fields = {k.strip().lower(): v for k, _, v in (n.partition("=") for n, _ in items)}
            remaining = _number(fields.get("remaining") or fields.get("r"))
            if remaining is not None:
                found.append((remaining, _number(fields.get("reset") or fields.get("t")), ""))
        else:
            for name, params in items:
                remaining = _number(params.get("r"))
                if remaining is not None:
                    found.append((remaining, _number(params.get("t")), name))
    remaining = _number(h.get("RateLimit-Remaining"))
    if remaining is not None:
        found.append((remaining, _number(h.get("RateLimit-Reset")), ""))
    used_up = [(reset, name) for remaining, reset, name in found if remaining <= 0]
    if not used_up:
        return False, None
    windows = {name: _number(p.get("w")) for name, p in _sf_list(h.get("RateLimit-Policy", ""))}
    resets = [reset if reset is not None else windows.get(name) for reset, name in used_up]
    known = [r for r in resets if r is not None]
    return True, max(known) if known else None


def vendor_pause(
    signals: RateLimitSignals,
    status: int,
    headers: Mapping[str, str],
    now: float,
    *,
    fallback_s: float = RATE_LIMIT_DEFAULT_PAUSE_S,
) -> VendorPause | None:
    """The pause a vendor's answer asks for, or ``None`` when it asks for none.

    A throttle status pauses for ``Retry-After`` (seconds or an HTTP date), else the reset
    header in its declared format, else the IETF reset, else ``fallback_s``. A remaining count
    of zero (the declared ``remaining_header`` or the IETF headers) pauses until the reset
    even on a success, so the next request is not the one refused. Never longer than
    ``RATE_LIMIT_MAX_PAUSE_S``.
    """
    h = _headers(headers)
    throttled = status in signals.throttle_statuses
    retry_after = None
    if signals.retry_after_header and (value := h.get(signals.retry_after_header)) is not None:
        retry_after = parse_retry_after(value, now)
    reset = None
    if signals.reset_header and signals.reset_format and signals.reset_header in h:
        reset = parse_reset(h[signals.reset_header], signals.reset_format, now)
    remaining = _number(h.get(signals.remaining_header)) if signals.remaining_header else None
    ietf_used_up, ietf_reset = ietf_exhausted(h)
    exhausted = (remaining is not None and remaining <= 0) or ietf_used_up
    if throttled:
        order = (("Retry-After", retry_after), ("reset header", reset), ("RateLimit", ietf_reset))
        reason = f"the vendor answered {status}"
    elif exhausted:
        order = (("reset header", reset), ("RateLimit", ietf_reset), ("Retry-After", retry_after))
        reason = "the vendor says no requests remain"
    else:
        return None
    for source, seconds in order:
        if seconds is not None:
            return VendorPause(
                min(seconds, RATE_LIMIT_MAX_PAUSE_S), throttled, f"{reason} ({source})"
            )
    return VendorPause(min(fallback_s, RATE_LIMIT_MAX_PAUSE_S), throttled, reason)


# --- counters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorCounters:
    """What the limiter did for one connector since its state was created."""

    admitted: int = 0
    """Requests granted a budget: to go now, or reserved for later (``delayed``)."""
    delayed: int = 0
    """Admitted requests that had to wait for their slot first."""
    refused: int = 0
    """Asks answered "come back later" with nothing charged: past the wait a worker may
    hold (the execution is rescheduled), or a full concurrency policy."""
    throttled: int = 0
    """Answers with a throttle status from the vendor."""
    paused: int = 0
    """Pauses set from vendor signals (throttle answers and exhausted quotas)."""
    paused_for_s: float = 0.0
    """Seconds until the latest pause ends (0 when none is running)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "admitted": self.admitted,
            "delayed": self.delayed,
            "refused": self.refused,
            "throttled": self.throttled,
            "paused": self.paused,
            "pausedForSeconds": round(self.paused_for_s, 3),
        }


def _counters(fields: Mapping[str, float], now: float) -> dict[str, ConnectorCounters]:
    """``{"github:admitted": 3, "github:paused_until": 1.7e9, …}`` → per connector."""
    values: dict[str, dict[str, float]] = {}
    for field, value in fields.items():
        connector, _, name = field.rpartition(":")
        values.setdefault(connector, {})[name] = value
    return {
        connector: ConnectorCounters(
            admitted=int(v.get("admitted", 0)),
            delayed=int(v.get("delayed", 0)),
            refused=int(v.get("refused", 0)),
            throttled=int(v.get("throttled", 0)),
            paused=int(v.get("paused", 0)),
            paused_for_s=max(0.0, v.get("paused_until", 0.0) - now),
        )
        for connector, v in sorted(values.items())
    }


# --- state backends ----------------------------------------------------------------------


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
            args += (_KIND_CODES[b.kind], _fmt(b.capacity), _fmt(b.refill_per_s))
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
        return _counters(fields, now)

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
        return _counters(dict(rows), self._clock())

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


# --- the limiter -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reservation:
    scope: RequestScope
    """Kept so its ``id`` is not reused while the reservation waits."""
    at: float
    """``time.monotonic()`` when the request may go."""
    leases: list[tuple[str, str]]


class SharedLimiter:
    """The executor's :class:`~opsctl.connectors.executor.Limiter` over a shared state.

    ``plans`` names the vendor plan per connector id (``{"shopify": "plus"}``) whose overrides
    apply; a plan a definition does not have is ignored with a warning. One instance per
    process; safe to share between its tasks.
    """

    def __init__(
        self,
        state: LimiterState,
        *,
        plans: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self._plans = dict(plans or {})
        self._clock = clock
        self._rng = rng or random.Random()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._seq = itertools.count(1)
        self._budgets: dict[tuple[str, str, str | None, str], Budget] = {}
        self._warned: set[tuple[str, str]] = set()
        self._held: dict[int, tuple[RequestScope, list[tuple[str, str]]]] = {}
        self._reserved: dict[int, _Reservation] = {}
        self._monotonic = time.monotonic
        self._released: list[tuple[str, str]] = []
        self._flusher: asyncio.Task[None] | None = None

    # what a request draws on

    def _plan(self, definition: Definition) -> str | None:
        plan = self._plans.get(definition.id)
        if plan is None or plan in definition.rate_limits.plans:
            return plan
        if (definition.id, plan) not in self._warned:
            self._warned.add((definition.id, plan))
            log.warning(
                "connector %s has no plan %r; its rate limits apply as written", definition.id, plan
            )
        return None

    def _budget(self, definition: Definition, plan: str | None, policy: RateLimitPolicy) -> Budget:
        key = (definition.id, definition.digest, plan, policy.id)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = fleet_budget(policy)
        return budget

    def charges(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> list[Charge]:
        """Every budget this request draws on, with its cost."""
        plan = self._plan(definition)
        out = []
        for policy in definition.policies_for(operation, scope.path, plan=plan):
            values = [
                f"{name}={scope_value(name, definition, operation, scope)}" for name in policy.scope
            ]
            if policy.kind == "concurrency":  # a lease set, never read as another kind's hash
                values.append("leases")
            key = self.state.key(definition.id, policy.id, _digest(values))
            cost = float(operation.costs.get(policy.id, policy.cost))
            out.append(Charge(policy.id, key, self._budget(definition, plan, policy), cost))
        return out

    def connection_pause_key(self, definition: Definition, scope: RequestScope) -> str:
        who = scope.connection_id or scope.credential_id or ""
        return self.state.key(definition.id, _NO_POLICY, _digest([who])) + RATE_LIMIT_PAUSE_SUFFIX

    # the Limiter protocol

    async def acquire(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> float | None:
        """``None``: every matching budget admitted the request (and was charged); go.

        A number: wait that long, then ask again. When every budget admits within the
        definition's ``retry.max_wait_s``, the request is charged now for that later time (a
        reservation) and the next ask for the same ``scope`` is answered here, without a round
        trip: one round trip per request however many workers wait. Past it, or while a
        concurrency policy is full, nothing is charged and the next ask goes to the state.
        """
        key = id(scope)
        reservation = self._reserved.pop(key, None)
        if reservation is not None:
            left = reservation.at - self._monotonic()
            if left > 0.0005:
                self._reserved[key] = reservation
                return left
            if reservation.leases:
                self._held[key] = (scope, reservation.leases)
            return None
        if self._reserved:
            self._forget_abandoned()
        charges = self.charges(definition, operation, scope)
        leased = any(c.budget.kind == "concurrency" for c in charges)
        lease = f"{self._owner}:{next(self._seq)}" if leased else ""
        released, self._released = self._released, []
        try:
            grant = await self.state.admit(
                definition.id,
                self.connection_pause_key(definition, scope),
                charges,
                lease,
                released,
                definition.retry.max_wait_s,
            )
        except BaseException:
            self._released[:0] = released
            raise
        leases = [(c.key, lease) for c in charges if c.budget.kind == "concurrency"]
        if grant.outcome == "now":
            if leases:
                self._held[key] = (scope, leases)
            return None
        if grant.outcome == "reserved":
            self._reserved[key] = _Reservation(scope, self._monotonic() + grant.wait_s, leases)
            return grant.wait_s
        return grant.wait_s + self._rng.uniform(0.0, min(grant.wait_s, 0.005))

    def _forget_abandoned(self) -> None:
        """Reservations nobody came back for (the execution was rescheduled): their budget is
        spent, their leases go back."""
        stale = self._monotonic() - RATE_LIMIT_RESERVATION_GRACE_S
        for key, reservation in list(self._reserved.items()):
            if reservation.at < stale:
                del self._reserved[key]
                self._released.extend(reservation.leases)

    async def release(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> None:
        """Give back the request's concurrency leases: on the next acquire's round trip, or
        alone after ``RATE_LIMIT_RELEASE_FLUSH_S`` when none comes."""
        held = self._held.pop(id(scope), None)
        if held is None:
            return
        self._released.extend(held[1])
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(RATE_LIMIT_RELEASE_FLUSH_S)
        await self._flush()

    async def _flush(self) -> None:
        pending, self._released = self._released, []
        try:
            await self.state.release(pending)
        except QueueError as exc:  # the leases lapse on their own
            log.warning("rate limiter: could not give back %d lease(s): %s", len(pending), exc)

    async def observe(
        self,
        definition: Definition,
        operation: Operation,
        scope: RequestScope,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        """Pause the request's budgets for every worker when the vendor's answer says so."""
        signals = definition.rate_limits.signals
        charges: list[Charge] | None = None
        fallback = RATE_LIMIT_DEFAULT_PAUSE_S
        if status in signals.throttle_statuses:
            charges = self.charges(definition, operation, scope)
            windows = [c.budget.window_s for c in charges if c.budget.window_s > 0]
            if windows:
                fallback = min(min(windows), RATE_LIMIT_FALLBACK_PAUSE_CAP_S)
        pause = vendor_pause(signals, status, headers, self._clock(), fallback_s=fallback)
        if pause is None:
            return
        if charges is None:
            charges = self.charges(definition, operation, scope)
        keys = [c.pause_key for c in charges] or [self.connection_pause_key(definition, scope)]
        log.info(
            "rate limiter: pausing %s for %.1f s: %s",
            definition.id,
            pause.seconds,
            pause.reason,
            extra={"connector": definition.id, "pause_s": pause.seconds},
        )
        await self.state.pause(definition.id, keys, pause.seconds, throttled=pause.throttled)

    # operators

    async def counters(self) -> dict[str, ConnectorCounters]:
        return await self.state.counters()

    async def close(self) -> None:
        """Give back what is still held, then close the state."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for _, leases in self._held.values():
            self._released.extend(leases)
        for reservation in self._reserved.values():
            self._released.extend(reservation.leases)
        self._held.clear()
        self._reserved.clear()
        if self._released:
            await self._flush()
        await self.state.close()


async def open_state(
    settings: Settings, *, lease_s: float = RATE_LIMIT_LEASE_S
) -> RedisState | SQLiteState:
    """The state the settings' queue names: Redis, or the embedded queue's SQLite file."""
    if settings.queue_backend == "redis":
        return await RedisState.open(settings, lease_s=lease_s)
    return await SQLiteState.open(settings.queue_sqlite_path, lease_s=lease_s)


@asynccontextmanager
async def open_limiter(
    settings: Settings, *, plans: Mapping[str, str] | None = None
) -> AsyncIterator[SharedLimiter]:
    """A :class:`SharedLimiter` on the settings' queue backend, closed after the block."""
    limiter = SharedLimiter(await open_state(settings), plans=plans)
    try:
        yield limiter
    finally:
        await limiter.close()


async def read_counters(queue: Any, settings: Settings) -> dict[str, ConnectorCounters]:
    """The counters, read through an open queue's own connection (they live beside it):
    the Redis client of a Redis queue, or the file of the SQLite one."""
    if getattr(queue, "backend", None) == "redis":
        client = queue._client  # the queue's pool: no second connection per health read
        state = RedisState(client, prefix=settings.redis_prefix, where="redis")
        return await state.counters()
    sqlite_state = await SQLiteState.open(Path(getattr(queue, "path", settings.queue_sqlite_path)))
    try:
        return await sqlite_state.counters()
    finally:
        await sqlite_state.close()


__all__ = [
    "Budget",
    "Charge",
    "ConnectorCounters",
    "LimiterState",
    "RedisState",
    "SQLiteState",
    "SharedLimiter",
    "VendorPause",
    "fleet_budget",
    "ietf_exhausted",
    "open_limiter",
    "open_state",
    "read_counters",
    "scope_value",
    "vendor_pause",
]
