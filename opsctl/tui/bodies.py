"""The JSON the web daemon and the CLI answer, turned into the dashboard's plain data.

Lenient by design: a field missing from a body (an older or newer daemon) shows as ``-``
rather than failing the pane.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from opsctl.tui.data import (
    Condition,
    ConnectorRow,
    Flag,
    HealthData,
    LimiterCounts,
    RateLimitRow,
    RateLimitsData,
    ReadinessCheck,
    StageOutcome,
)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_health(url: str, features: Any, readiness: Any) -> HealthData:
    flags_active = _dict(_dict(features).get("features"))
    configured = _dict(_dict(features).get("configured"))
    flags = tuple(
        Flag(
            str(name),
            bool(value),
            bool(configured[name]) if isinstance(configured.get(name), bool) else None,
        )
        for name, value in sorted(flags_active.items())
    )
    # The health-check draft's shape: an array of objects a check (``output`` only when it
    # warns or fails); a single object, as older daemons answered, reads the same.
    checks = tuple(
        ReadinessCheck(
            str(name),
            str(_dict(entry).get("status", "?")),
            str(_dict(entry).get("output", "")),
        )
        for name, entries in _dict(_dict(readiness).get("checks")).items()
        for entry in (entries if isinstance(entries, list) else [entries])
    )
    environment = _dict(features).get("environment")
    return HealthData(
        url,
        environment=str(environment) if environment else None,
        flags=flags,
        readiness_status=str(_dict(readiness).get("status") or "") or None,
        readiness=checks,
    )


def parse_connectors(body: Any) -> tuple[ConnectorRow, ...]:
    items = _dict(body).get("connectors")
    rows = []
    for item in items if isinstance(items, list) else []:
        c = _dict(item)
        if not c.get("id"):
            continue
        rows.append(
            ConnectorRow(
                id=str(c["id"]),
                stage=c.get("stage"),
                stage_source=str(c.get("stage_source") or "definition"),
                version=c.get("version"),
                auth=c.get("auth"),
                valid=bool(c.get("valid", True)),
                client_required=bool(c.get("client_required")),
                client_registered=bool(c.get("client_registered")),
                drift=bool(c.get("drift")),
                display_name=c.get("display_name"),
                warnings=tuple(str(w) for w in c.get("warnings") or ()),
            )
        )
    return tuple(rows)


def parse_rate_limits(body: Any) -> RateLimitsData:
    """The endpoint's connectors and policies as table rows (a missing figure shows as -)."""
    top = _dict(body)
    rows: list[RateLimitRow] = []
    connectors = top.get("connectors")
    for connector in connectors if isinstance(connectors, list) else []:
        c = _dict(connector)
        policies = c.get("policies")
        for policy in policies if isinstance(policies, list) else []:
            rows.append(_rate_limit_row(str(c.get("id", "?")), _dict(policy)))
    shape = _dict(top.get("topology"))
    topology = ""
    if shape.get("workers") is not None:
        topology = f"{shape['workers']} worker(s) x {shape.get('concurrency')} jobs"
        if shape.get("proxy"):
            topology += f", {shape['proxy']} x {shape.get('proxy_replicas', 1)}"
    return RateLimitsData(tuple(rows), topology)


def _rate(value: Any) -> str:
    """A rate in the largest unit that keeps it at one or more: ``53.33/min``, ``2/s``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    for factor, unit in ((1, "s"), (60, "min"), (3_600, "h")):
        if value * factor >= 1:
            return f"{value * factor:.4g}/{unit}"
    return f"{value * 86_400:.4g}/day"


def parse_limiter(body: Any) -> dict[str, LimiterCounts]:
    """``QueueSnapshot.rate_limits`` (``{"connectors": {id: counters}}``) per connector."""

    def number(value: Any) -> float:
        return float(value) if isinstance(value, int | float) else 0.0

    out = {}
    for connector, raw in _dict(_dict(body).get("connectors")).items():
        c = _dict(raw)
        out[str(connector)] = LimiterCounts(
            admitted=int(number(c.get("admitted"))),
            delayed=int(number(c.get("delayed"))),
            refused=int(number(c.get("refused"))),
            throttled=int(number(c.get("throttled"))),
            paused=int(number(c.get("paused"))),
            paused_for_s=number(c.get("pausedForSeconds")),
        )
    return out


def _rate_limit_row(connector_id: str, p: Mapping[str, Any]) -> RateLimitRow:
    fleet, share = _dict(p.get("fleet")), _dict(p.get("per_process"))
    if p.get("kind") == "concurrency":
        fleet_text = f"{fleet.get('concurrency', '-')} in flight"
        share_text = f"{share.get('concurrency', '-')} in flight"
    else:
        fleet_text = f"{_rate(fleet.get('rate_per_s'))} +{fleet.get('burst', '-')}"
        share_text = f"{_rate(share.get('rate_per_s'))} +{share.get('burst', '-')}"
    warnings = tuple(str(_dict(w).get("message") or w) for w in p.get("warnings") or () if w)
    return RateLimitRow(
        connector=connector_id,
        policy=str(p.get("policy") or p.get("id") or "?"),
        kind=str(p.get("kind", "?")),
        limit=str(p.get("vendor_limit") or "-"),
        fleet=fleet_text,
        per_process=share_text,
        warnings=warnings,
        scope=" ".join(str(s) for s in p.get("scope") or ()),
    )


def parse_stage_change(
    connector_id: str, verb: Literal["promote", "demote"], body: Any
) -> StageOutcome:
    b = _dict(body)
    outcome = b.get("status")
    if outcome not in ("changed", "unchanged", "refused"):
        return StageOutcome(connector_id, verb, "error", error=f"unexpected answer: {body!r:.80}")
    conditions = tuple(
        Condition(str(c.get("name", "?")), str(c.get("status", "?")), str(c.get("reason", "")))
        for c in (_dict(x) for x in b.get("conditions") or ())
    )
    return StageOutcome(connector_id, verb, outcome, b.get("from"), b.get("to"), conditions)
