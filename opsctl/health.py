"""The checks behind every health endpoint, ``opsctl check`` and the deploy gate.

Each check returns a :class:`CheckResult` in the IETF health-check vocabulary (``pass``,
``warn``, ``fail``) with a reason a person can act on and the value it observed. Checks never
raise for the condition they test: an unreachable dependency is a ``fail`` with its reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from opsctl.connections import describe_redis_error, ping_redis
from opsctl.errors import OpsctlError
from opsctl.settings import Settings
from opsctl.store import Store, migration_status

Status = Literal["pass", "warn", "fail"]
CHECK_TIMEOUT_S = 3.0
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    reason: str
    observed: Any = None
    unit: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    checked_at: float = field(default_factory=time.time)

    def to_json(self, *, detailed: bool) -> dict[str, Any]:
        """The IETF-style object; values and details only for an authenticated caller."""
        body: dict[str, Any] = {"status": self.status, "output": self.reason}
        if detailed:
            if self.observed is not None:
                body["observedValue"] = self.observed
            if self.unit:
                body["observedUnit"] = self.unit
            body.update(self.details)
            body["time"] = iso_time(self.checked_at)
        return body


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def worst(statuses: Iterable[Status]) -> Status:
    """The overall status: the worst of its parts (``pass`` when there are none)."""
    return max(statuses, key=_RANK.__getitem__, default="pass")


async def check_database(store: Store | None) -> CheckResult:
    """The database answers and its schema is at the version this opsctl expects."""
    if store is None:
        return CheckResult("database", "fail", "the database is not open")
    try:
        rtt = await asyncio.wait_for(store.ping(), CHECK_TIMEOUT_S)
        status = await asyncio.wait_for(migration_status(store), CHECK_TIMEOUT_S)
    except TimeoutError:
        return CheckResult(
            "database", "fail", f"{store.backend} did not answer within {CHECK_TIMEOUT_S:.0f} s"
        )
    except OpsctlError as exc:
        return CheckResult("database", "fail", exc.message)
    details = {"backend": store.backend, "schemaVersion": status.current}
    if status.current > status.latest:
        return CheckResult(
            "database",
            "fail",
            f"schema version {status.current} is newer than this release knows ({status.latest})",
            round(rtt * 1000, 2),
            "ms",
            details,
        )
    if status.pending:
        return CheckResult(
            "database",
            "fail",
            f"{len(status.pending)} migration(s) pending; run opsctl db migrate",
            round(rtt * 1000, 2),
            "ms",
            details,
        )
    return CheckResult(
        "database",
        "pass",
        f"{store.backend} reachable, schema current",
        round(rtt * 1000, 2),
        "ms",
        details,
    )


async def check_queue_backend(settings: Settings, redis: Redis | None) -> CheckResult:
    """The queue's backend answers: Redis by PING, the embedded SQLite queue by its file."""
    if settings.queue_backend == "sqlite":
        return CheckResult(
            "queue",
            "pass",
            "embedded SQLite queue (development only)",
            details={"backend": "sqlite"},
        )
    url = settings.queue_redis_url or ""
    if redis is None:
        return CheckResult("queue", "fail", "no Redis client", details={"backend": "redis"})
    try:
        rtt = await asyncio.wait_for(ping_redis(redis), CHECK_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        return CheckResult(
            "queue", "fail", describe_redis_error(url, exc), details={"backend": "redis"}
        )
    return CheckResult(
        "queue", "pass", "redis reachable", round(rtt * 1000, 2), "ms", {"backend": "redis"}
    )


async def run_checks(checks: Iterable[Callable[[], Awaitable[CheckResult]]]) -> list[CheckResult]:
    """Run checks concurrently; a check that raises becomes a ``fail`` naming the error."""

    async def guarded(check: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
        try:
            return await check()
        except Exception as exc:  # a bug in one check must not hide the others
            name = getattr(check, "check_name", getattr(check, "__name__", "check"))
            return CheckResult(name, "fail", f"check crashed: {type(exc).__name__}: {exc}")

    return list(await asyncio.gather(*(guarded(c) for c in checks)))
