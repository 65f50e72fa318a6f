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

Budgets are the fleet figures of docs/connectors.md (:mod:`opsctl.connectors.ratelimits`; f = 0.8,
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

The parts live beside it: budgets, charges and counters in
:mod:`opsctl.connectors.limiter_budget`, the vendor signals in
:mod:`opsctl.connectors.limiter_signals`, and the Redis and SQLite states in
:mod:`opsctl.connectors.limiter_state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsctl.connectors.executor import RequestScope
from opsctl.connectors.limiter_budget import (
    NO_POLICY,
    Budget,
    Charge,
    ConnectorCounters,
    fleet_budget,
    scope_digest,
    scope_value,
)
from opsctl.connectors.limiter_signals import vendor_pause
from opsctl.connectors.limiter_state import LimiterState, RedisState, SQLiteState, open_state
from opsctl.connectors.model import Definition, Operation, RateLimitPolicy
from opsctl.constants import (
    RATE_LIMIT_DEFAULT_PAUSE_S,
    RATE_LIMIT_FALLBACK_PAUSE_CAP_S,
    RATE_LIMIT_PAUSE_SUFFIX,
    RATE_LIMIT_RELEASE_FLUSH_S,
    RATE_LIMIT_RESERVATION_GRACE_S,
)
from opsctl.errors import QueueError
from opsctl.settings import Settings

log = logging.getLogger("opsctl.connectors.limiter")


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
            key = self.state.key(definition.id, policy.id, scope_digest(values))
            cost = float(operation.costs.get(policy.id, policy.cost))
            out.append(Charge(policy.id, key, self._budget(definition, plan, policy), cost))
        return out

    def connection_pause_key(self, definition: Definition, scope: RequestScope) -> str:
        who = scope.connection_id or scope.credential_id or ""
        return (
            self.state.key(definition.id, NO_POLICY, scope_digest([who])) + RATE_LIMIT_PAUSE_SUFFIX
        )

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
    "SharedLimiter",
    "open_limiter",
    "read_counters",
]
