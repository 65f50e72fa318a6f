"""The rate limiter's vocabulary: budgets, the charges a request makes on them, and counters.

A :class:`Budget` is a policy's fleet figures (docs/connectors.md); a :class:`Charge` names the
budget one request draws on and its cost; a :class:`Grant` is a state's answer; a
:class:`ConnectorCounters` is what operators see per connector.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from opsctl.connectors.executor import RequestScope
from opsctl.connectors.model import Definition, Operation, RateLimitPolicy
from opsctl.connectors.ratelimits import (
    SAFETY_FACTOR,
    concurrency_cap,
    exact,
    token_bucket,
    window_bucket,
)
from opsctl.constants import RATE_LIMIT_PAUSE_SUFFIX
from opsctl.errors import ConfigError

KIND_CODES: Final = {
    "fixed_window": "f",
    "sliding_window": "s",
    "token_bucket": "b",
    "concurrency": "c",
}
NO_POLICY: Final = "~"


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
    """The fleet-level budget (docs/connectors.md) for ``policy``, by the derivation's own formulas
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


def scope_digest(parts: Sequence[str]) -> str:
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


def counters_from(fields: Mapping[str, float], now: float) -> dict[str, ConnectorCounters]:
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


__all__ = [
    "KIND_CODES",
    "NO_POLICY",
    "Budget",
    "Charge",
    "ConnectorCounters",
    "Grant",
    "counters_from",
    "fleet_budget",
    "scope_digest",
    "scope_value",
]
