"""Vendor rate limits derived for a topology: safe fleet and per-process figures.

For a limit ``L`` per window ``W`` seconds the fleet draws on a bucket of ``C = floor(f·L·b)``
refilled at ``r = f·L·(1-b)/W`` (safety factor ``f``, burst share ``b``), so no window of ``W``
sees more than ``L``. A process's share among ``N`` processes that have no shared limiter is
``r/N`` with a burst of ``max(1, floor(C/N))``; a token bucket becomes ``floor(f·capacity)`` and
``f·refill``; a concurrency limit ``K`` becomes ``floor(f·K/N)`` in flight per process. A limit
in points admits ``floor(L/c)`` requests of cost ``c``. The reverse-proxy lines to paste are
built by :mod:`opsctl.connectors._proxy_lines`. Figures are computed with exact fractions, so a
figure worked by hand is the figure shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from fractions import Fraction
from typing import Any, Literal, get_args

from opsctl.connectors.durations import DurationError, parse_duration
from opsctl.connectors.model import Definition, Operation, RateLimitPolicy
from opsctl.constants import WORKER_CONCURRENCY
from opsctl.errors import ConfigError, UsageError

SAFETY_FACTOR = Fraction(4, 5)
"""``f``: the share of a vendor limit the fleet plans to use."""
BURST_SHARE = Fraction(1, 5)
"""``b``: the share of the safe budget that may go at once; the rest is spread over the window."""

ProxyKind = Literal["nginx", "envoy"]
PROXY_KINDS: tuple[ProxyKind, ...] = get_args(ProxyKind)
Layer = Literal["fleet", "process", "proxy"]

_KIND_FIELDS: Mapping[str, frozenset[str]] = {
    "fixed_window": frozenset({"limit", "window"}),
    "sliding_window": frozenset({"limit", "window"}),
    "token_bucket": frozenset({"capacity", "refill_per_s"}),
    "concurrency": frozenset({"max_in_flight"}),
}


class DerivationError(ConfigError):
    """A definition or plan whose figures cannot be derived (exit code 2)."""


class InvalidParameter(UsageError):
    """A value the derivation cannot take; ``parameter`` names it (``workers``, ``connector``)."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def default_workers() -> int:
    """The worker count of the topology table (what ``opsctl up`` starts)."""
    from opsctl.topology import TOPOLOGY, by_name

    return by_name(TOPOLOGY)["worker"].instances


# --- the topology ------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """``workers`` processes of ``concurrency`` slots each, behind ``proxy_replicas`` proxies."""

    workers: int = field(default_factory=default_workers)
    concurrency: int = WORKER_CONCURRENCY
    proxy: ProxyKind = "nginx"
    proxy_replicas: int = 1

    def __post_init__(self) -> None:
        for name in ("workers", "concurrency", "proxy_replicas"):
            value = getattr(self, name)
            if value < 1:
                raise InvalidParameter(name, f"{name} must be at least 1, got {value}")
        if self.proxy not in PROXY_KINDS:
            raise InvalidParameter("proxy", f"proxy must be nginx or envoy, got {self.proxy!r}")

    @property
    def slots(self) -> int:
        """Requests the fleet can have in flight at once."""
        return self.workers * self.concurrency

    def to_json(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "concurrency": self.concurrency,
            "slots": self.slots,
            "proxy": self.proxy,
            "proxy_replicas": self.proxy_replicas,
        }


def parse_topology(
    *,
    workers: str | None = None,
    concurrency: str | None = None,
    proxy: str | None = None,
    proxy_replicas: str | None = None,
    spell: Callable[[str], str] = lambda name: name,
) -> Topology:
    """A topology from text (a command line or a query string); ``None`` takes the default.

    Raises :class:`InvalidParameter` naming the value as ``spell(name)`` (``--workers``,
    ``workers``) so each face speaks its own language.
    """

    def count(name: str, text: str | None) -> int | None:
        if text is None:
            return None
        try:
            value = int(text.strip())
        except ValueError:
            raise InvalidParameter(
                name, f"{spell(name)} must be a whole number, got {text!r}"
            ) from None
        if value < 1:
            raise InvalidParameter(name, f"{spell(name)} must be at least 1, got {value}")
        return value

    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("workers", count("workers", workers)),
            ("concurrency", count("concurrency", concurrency)),
            ("proxy_replicas", count("proxy_replicas", proxy_replicas)),
        )
        if value is not None
    }
    if proxy is not None:
        kind = proxy.strip().lower()
        if kind not in PROXY_KINDS:
            raise InvalidParameter(
                "proxy", f"{spell('proxy')} must be nginx or envoy, got {proxy!r}"
            )
        changes["proxy"] = kind
    return Topology(**changes)


# --- the formulas ------------------------------------------------------------------------


def exact(value: float | int | Fraction) -> Fraction:
    """A figure as the fraction it was written as (``0.1`` → 1/10, not the nearest double)."""
    return value if isinstance(value, Fraction) else Fraction(str(value))


def window_bucket(limit: float | Fraction, window_s: float | Fraction) -> tuple[int, Fraction]:
    """``(C, r)``: the fleet bucket for ``limit`` per ``window_s`` seconds."""
    limit, window = exact(limit), exact(window_s)
    return (
        math.floor(SAFETY_FACTOR * limit * BURST_SHARE),
        SAFETY_FACTOR * limit * (1 - BURST_SHARE) / window,
    )


def token_bucket(
    capacity: float | Fraction, refill_per_s: float | Fraction
) -> tuple[int, Fraction]:
    """``(C, r)``: the fleet bucket for a vendor bucket of ``capacity`` refilled per second."""
    return math.floor(SAFETY_FACTOR * exact(capacity)), SAFETY_FACTOR * exact(refill_per_s)


def process_share(rate: Fraction, burst: int, processes: int) -> tuple[Fraction, int]:
    """``(r/N, max(1, floor(C/N)))``: one process's part when nothing is shared."""
    return rate / processes, max(1, burst // processes)


def concurrency_cap(max_in_flight: int, processes: int) -> int:
    """``floor(f·K/N)``: requests in flight per process (N = 1: the fleet's cap)."""
    return math.floor(SAFETY_FACTOR * max_in_flight / processes)


def requests_admitted(limit: float | Fraction, cost: float | Fraction) -> int:
    """``floor(L/c)``: requests of cost ``c`` that a budget of ``L`` points admits."""
    return math.floor(exact(limit) / exact(cost))


def nginx_rate_per_minute(rate: Fraction, replicas: int) -> int:
    """``floor(60·r/M)``: the ``rate=…r/m`` of each of ``M`` nginx replicas."""
    return math.floor(60 * rate / replicas)


def proxy_burst(burst: int, replicas: int) -> int:
    """``floor(C/M)``: each proxy replica's share of the fleet burst."""
    return burst // replicas


# --- the derived figures -----------------------------------------------------------------


@dataclass(frozen=True)
class LimitWarning:
    """Where a limit cannot be kept: at all (``fleet``), by processes that share nothing
    (``process``: the shared limiter must), or by the reverse proxy (``proxy``)."""

    code: str
    layer: Layer
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "layer": self.layer, "message": self.message}


@dataclass(frozen=True)
class OperationCost:
    """What one operation costs against a policy, and how many of it the limit admits."""

    operation: str
    cost: float
    requests: int | None

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "cost": self.cost, "requests": self.requests}


@dataclass(frozen=True)
class ProxyLines:
    """Configuration for one policy: ``declare`` goes in nginx's ``http {}`` (envoy: the
    ``http_filters`` list), ``apply`` in the location that proxies the vendor (nginx only)."""

    kind: ProxyKind
    name: str
    key: str | None = None
    declare: tuple[str, ...] = ()
    apply: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "key": self.key,
            "declare": list(self.declare),
            "apply": list(self.apply),
        }


@dataclass(frozen=True)
class DerivedPolicy:
    """One vendor policy worked out for a topology; figures are per scope value.

    Rates are requests per second and bursts requests (for a limit in points: requests of the
    costliest operation the policy covers, so any mix of operations stays within it).
    ``process_*`` figures are each process's share when processes share no limiter.
    """

    connector: str
    policy: str
    kind: str
    scope: tuple[str, ...]
    vendor_limit: str
    unit: str
    cost: float
    source_url: str
    source_as_of: date
    source_note: str | None = None
    description: str | None = None
    limit: int | None = None
    window: str | None = None
    window_s: float | None = None
    capacity: float | None = None
    refill_per_s: float | None = None
    max_in_flight: int | None = None
    requests_per_window: int | None = None
    fleet_rate: float | None = None
    fleet_burst: int | None = None
    process_rate: float | None = None
    process_burst: int | None = None
    fleet_concurrency: int | None = None
    process_concurrency: int | None = None
    costs: tuple[OperationCost, ...] = ()
    proxy: ProxyLines | None = None
    warnings: tuple[LimitWarning, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "policy": self.policy,
            "kind": self.kind,
            "scope": list(self.scope),
            "vendor_limit": self.vendor_limit,
            "unit": self.unit,
            "cost": self.cost,
            "limit": self.limit,
            "window": self.window,
            "window_s": self.window_s,
            "capacity": self.capacity,
            "refill_per_s": self.refill_per_s,
            "max_in_flight": self.max_in_flight,
            "requests_per_window": self.requests_per_window,
            "source": {
                "url": self.source_url,
                "as_of": self.source_as_of.isoformat(),
                "note": self.source_note,
            },
            "fleet": {
                "rate_per_s": self.fleet_rate,
                "burst": self.fleet_burst,
                "concurrency": self.fleet_concurrency,
            },
            "per_process": {
                "rate_per_s": self.process_rate,
                "burst": self.process_burst,
                "concurrency": self.process_concurrency,
            },
            "costs": [c.to_json() for c in self.costs],
            "proxy": self.proxy.to_json() if self.proxy else None,
            "warnings": [w.to_json() for w in self.warnings],
        }


@dataclass(frozen=True)
class ConnectorLimits:
    """Every policy of one connector under one plan (``None``: the figures as written)."""

    connector: str
    display_name: str
    base_url: str
    plan: str | None
    plans: tuple[str, ...]
    policies: tuple[DerivedPolicy, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.connector,
            "display_name": self.display_name,
            "base_url": self.base_url,
            "plan": self.plan,
            "plans": list(self.plans),
            "policies": [p.to_json() for p in self.policies],
        }


@dataclass(frozen=True)
class RateLimitReport:
    """What ``opsctl rate-limits`` prints and ``GET /api/status/rate-limits`` answers."""

    topology: Topology
    connectors: tuple[ConnectorLimits, ...]

    @property
    def proxy_config(self) -> str:
        from opsctl.connectors._proxy_lines import render_config

        return render_config(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "topology": self.topology.to_json(),
            "factors": {"safety": float(SAFETY_FACTOR), "burst_share": float(BURST_SHARE)},
            "connectors": [c.to_json() for c in self.connectors],
            "proxy": {
                "kind": self.topology.proxy,
                "replicas": self.topology.proxy_replicas,
                "config": self.proxy_config,
            },
        }


# --- deriving ----------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``3600`` → ``1 h``; ``86400`` → ``1 day``; ``10`` → ``10 s``."""
    for size, unit in ((86_400, "day"), (3_600, "h"), (60, "min"), (1, "s")):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            plural = "s" if unit == "day" and count != 1 else ""
            return f"{count} {unit}{plural}"
    return f"{seconds:g} s"


def _number(value: float | Fraction) -> str:
    value = float(value)
    return f"{value:,.0f}" if value == int(value) else f"{value:,.4g}"


def covered_operations(definition: Definition, policy: RateLimitPolicy) -> tuple[Operation, ...]:
    """The operations a policy covers, judged on their path templates."""
    return tuple(
        op
        for op in definition.operations
        if policy.match.applies(method=op.method, path=op.path, operation_id=op.id)
    )


def policies_for_plan(definition: Definition, plan: str | None) -> tuple[RateLimitPolicy, ...]:
    """The policies with ``plan``'s overrides applied, each checked for figures that derive.

    Raises :class:`InvalidParameter` for a plan the connector does not have, and
    :class:`DerivationError` for an override that does not fit its policy or a figure that
    cannot be derived (a zero window, a missing limit).
    """
    limits = definition.rate_limits
    if plan is not None and plan not in limits.plans:
        known = ", ".join(sorted(limits.plans)) or "none"
        raise InvalidParameter(
            "plan", f"connector {definition.id!r} has no plan {plan!r} (its plans: {known})"
        )
    by_id = {p.id: p for p in limits.policies}
    out: list[RateLimitPolicy] = []
    overrides = limits.plans[plan].overrides if plan is not None else {}
    for unknown in sorted(set(overrides) - set(by_id)):
        raise DerivationError(
            f"{definition.id}: plan {plan!r} overrides policy {unknown!r}, which is not defined"
        )
    for policy in limits.policies:
        changes = dict(overrides.get(policy.id, {}))
        wrong = sorted(set(changes) - _KIND_FIELDS.get(policy.kind, frozenset()))
        if wrong:
            raise DerivationError(
                f"{definition.id}: plan {plan!r} sets {', '.join(wrong)} on policy "
                f"{policy.id!r}, a {policy.kind} that has "
                f"{', '.join(sorted(_KIND_FIELDS.get(policy.kind, ()))) or 'no such figures'}"
            )
        if "window" in changes:
            try:
                changes["window_s"] = parse_duration(str(changes["window"]))
            except DurationError as exc:
                raise DerivationError(
                    f"{definition.id}: plan {plan!r}, policy {policy.id!r}: {exc}"
                ) from None
        policy = replace(policy, **changes) if changes else policy
        _check_figures(definition.id, policy)
        out.append(policy)
    return tuple(out)


def _check_figures(connector: str, policy: RateLimitPolicy) -> None:
    def bad(what: str) -> DerivationError:
        return DerivationError(f"{connector}: policy {policy.id!r} ({policy.kind}) {what}")

    if policy.kind in ("fixed_window", "sliding_window"):
        if policy.window_s is None or policy.window_s <= 0:
            raise bad("has a zero or missing window; a window must be longer than zero")
        if policy.limit is None or policy.limit < 1:
            raise bad(f"needs a limit of at least 1, got {policy.limit}")
    elif policy.kind == "token_bucket":
        if not policy.capacity or policy.capacity <= 0:
            raise bad(f"needs a capacity above zero, got {policy.capacity}")
        if not policy.refill_per_s or policy.refill_per_s <= 0:
            raise bad(f"needs a refill_per_s above zero, got {policy.refill_per_s}")
    elif policy.kind == "concurrency":
        if policy.max_in_flight is None or policy.max_in_flight < 1:
            raise bad(f"needs a max_in_flight of at least 1, got {policy.max_in_flight}")
    else:
        raise DerivationError(f"{connector}: policy {policy.id!r} has unknown kind {policy.kind!r}")
    if policy.cost <= 0:
        raise bad(f"needs a cost above zero, got {policy.cost}")


def derive_policy(
    definition: Definition, policy: RateLimitPolicy, topology: Topology
) -> DerivedPolicy:
    """One policy's figures, warnings and proxy lines for ``topology`` (checked figures)."""
    from opsctl.connectors._proxy_lines import proxy_lines

    _check_figures(definition.id, policy)
    n = topology.workers
    covered = covered_operations(definition, policy)
    costs = tuple(
        OperationCost(op.id, float(op.costs.get(policy.id, policy.cost)), None) for op in covered
    )
    cost = exact(max((c.cost for c in costs), default=policy.cost))
    base = DerivedPolicy(
        connector=definition.id,
        policy=policy.id,
        kind=policy.kind,
        scope=tuple(policy.scope),
        vendor_limit="",
        unit=policy.unit,
        cost=float(cost),
        source_url=policy.source.url,
        source_as_of=policy.source.as_of,
        source_note=policy.source.note,
        description=policy.description,
        limit=policy.limit,
        window=policy.window,
        window_s=policy.window_s,
        capacity=policy.capacity,
        refill_per_s=policy.refill_per_s,
        max_in_flight=policy.max_in_flight,
    )
    warnings: list[LimitWarning] = []
    impossible = False

    if policy.kind == "concurrency":
        assert policy.max_in_flight is not None
        k = policy.max_in_flight
        per_process = concurrency_cap(k, n)
        if per_process == 0:
            warnings.append(
                LimitWarning(
                    "process-concurrency-zero",
                    "process",
                    f"{_number(SAFETY_FACTOR * k)} in flight split among {n} processes rounds "
                    "to 0: without the shared limiter's leases no process may send one",
                )
            )
        derived = replace(
            base,
            vendor_limit=f"{k:,} in flight",
            costs=(),
            cost=1.0,
            fleet_concurrency=concurrency_cap(k, 1),
            process_concurrency=per_process,
        )
    else:
        if policy.kind == "token_bucket":
            assert policy.capacity is not None and policy.refill_per_s is not None
            capacity = exact(policy.capacity)
            refill = exact(policy.refill_per_s)
            vendor = f"bucket of {_number(capacity)}, refilled {_number(refill)}/s"
            if cost != 1:
                capacity = Fraction(requests_admitted(capacity, cost))
                refill = refill / cost
            burst, rate = token_bucket(capacity, refill)
            if capacity < 1:
                impossible = True
                warnings.append(_cost_over_limit(policy, cost, _number(policy.capacity)))
            derived = replace(base, fleet_burst=burst, fleet_rate=float(rate))
        else:
            assert policy.limit is not None and policy.window_s is not None
            window = human_duration(policy.window_s)
            vendor = f"{policy.limit:,} {policy.unit} / {window}"
            admitted = requests_admitted(policy.limit, cost)
            burst, rate = window_bucket(admitted, policy.window_s)
            if admitted < 1:
                impossible = True
                warnings.append(_cost_over_limit(policy, cost, f"{policy.limit:,}"))
            elif rate / n * exact(policy.window_s) < 1:
                share = float(rate / n * exact(policy.window_s))
                warnings.append(
                    LimitWarning(
                        "process-share-below-one",
                        "process",
                        f"each of {n} processes may send {share:.3g} requests per {window}: "
                        "under one, so only the shared limiter can keep the fleet under "
                        f"{admitted:,}",
                    )
                )
            derived = replace(
                base, fleet_burst=burst, fleet_rate=float(rate), requests_per_window=admitted
            )
        if cost != 1 or policy.unit == "points":
            vendor += f" (cost {_number(cost)} a request)"
            costs = tuple(replace(c, requests=_admitted_for(policy, exact(c.cost))) for c in costs)
        process_rate, process_burst = process_share(rate, burst, n)
        if burst // n == 0 and not impossible:
            warnings.append(
                LimitWarning(
                    "process-burst-zero",
                    "process",
                    f"a fleet burst of {burst} split among {n} processes rounds to 0: each is "
                    f"given 1, so together they may send {n} at once; only the shared limiter "
                    f"keeps the fleet's burst at {burst}",
                )
            )
        derived = replace(
            derived,
            vendor_limit=vendor,
            costs=costs,
            process_rate=float(process_rate),
            process_burst=process_burst,
        )
    lines, proxy_warnings = proxy_lines(definition, policy, derived, topology)
    return replace(derived, proxy=lines, warnings=(*warnings, *proxy_warnings))


def _admitted_for(policy: RateLimitPolicy, cost: Fraction) -> int:
    budget = policy.capacity if policy.kind == "token_bucket" else policy.limit
    assert budget is not None
    return requests_admitted(budget, cost)


def _cost_over_limit(policy: RateLimitPolicy, cost: Fraction, budget: str) -> LimitWarning:
    return LimitWarning(
        "cost-over-limit",
        "fleet",
        f"a request costs {_number(cost)} {policy.unit}, more than the {budget} the vendor "
        "allows: it can never be sent",
    )


def derive_connector(
    definition: Definition, topology: Topology, *, plan: str | None = None
) -> ConnectorLimits:
    """Every policy of ``definition`` under ``plan``; see :func:`policies_for_plan`."""
    policies = policies_for_plan(definition, plan)
    return ConnectorLimits(
        connector=definition.id,
        display_name=definition.display_name,
        base_url=definition.base_url,
        plan=plan,
        plans=tuple(sorted(definition.rate_limits.plans)),
        policies=tuple(derive_policy(definition, p, topology) for p in policies),
    )


def derive_limits(
    definitions: Mapping[str, Definition],
    topology: Topology,
    *,
    connector: str | None = None,
    plan: str | None = None,
) -> RateLimitReport:
    """The report for one connector, or for every one (sorted by id).

    ``plan`` applies to each connector that has it; with no ``connector`` and no connector
    having the plan it is an :class:`InvalidParameter`, as is an unknown ``connector`` (the
    message lists the known ones).
    """
    if connector is not None:
        if connector not in definitions:
            known = ", ".join(sorted(definitions)) or "none are loaded"
            raise InvalidParameter("connector", f"unknown connector {connector!r} (known: {known})")
        chosen = [definitions[connector]]
    else:
        chosen = [definitions[key] for key in sorted(definitions)]
    if plan is not None and connector is None:
        having = [d for d in chosen if plan in d.rate_limits.plans]
        if not having:
            offered = sorted(
                f"{d.id}: {', '.join(sorted(d.rate_limits.plans))}"
                for d in chosen
                if d.rate_limits.plans
            )
            raise InvalidParameter(
                "plan", f"no connector has a plan {plan!r} (plans: {'; '.join(offered) or 'none'})"
            )
        return RateLimitReport(
            topology,
            tuple(
                derive_connector(d, topology, plan=plan if plan in d.rate_limits.plans else None)
                for d in chosen
            ),
        )
    return RateLimitReport(
        topology, tuple(derive_connector(d, topology, plan=plan) for d in chosen)
    )
