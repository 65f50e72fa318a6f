"""Definitions built in code for the derivation tests, and the shipped ones loaded once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from opsctl.connectors.durations import parse_duration
from opsctl.connectors.loader import load_definitions
from opsctl.connectors.model import (
    Auth,
    BearerAuth,
    Definition,
    Operation,
    Plan,
    PolicyMatch,
    PolicySource,
    RateLimitPolicy,
    RateLimits,
)

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "definitions"
SOURCE = PolicySource("https://docs.vendor.example/limits", date(2026, 11, 1))


def policy(policy_id: str = "p", kind: str = "fixed_window", **fields: Any) -> RateLimitPolicy:
    """A policy with a source; ``window`` is parsed into ``window_s`` as the loader does."""
    if "window" in fields and "window_s" not in fields:
        fields["window_s"] = parse_duration(fields["window"])
    fields.setdefault("scope", ("credential",))
    return RateLimitPolicy(id=policy_id, kind=kind, source=SOURCE, **fields)  # type: ignore[arg-type]


def match(**fields: Any) -> PolicyMatch:
    return PolicyMatch(
        frozenset(fields.get("methods", ())),
        fields.get("path_regex"),
        frozenset(fields.get("operations", ())),
    )


def operation(op_id: str, method: str = "GET", path: str = "/x", **costs: float) -> Operation:
    return Operation(op_id, method, path, costs=MappingProxyType(dict(costs)))  # type: ignore[arg-type]


def definition(
    policies: Sequence[RateLimitPolicy],
    *,
    operations: Sequence[Operation] = (),
    plans: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    auth: Auth | None = None,
    base_url: str = "https://api.vendor.example",
    connector_id: str = "vendor",
) -> Definition:
    ops = tuple(operations) or (operation("ping"),)
    return Definition(
        id=connector_id,
        version="1.0.0",
        display_name="Vendor",
        release_stage="experimental",
        base_url=base_url,
        auth=auth or BearerAuth(),
        operations=ops,
        check=ops[0].id,
        rate_limits=RateLimits(
            tuple(policies),
            plans=MappingProxyType(
                {
                    name: Plan(name, MappingProxyType({k: dict(v) for k, v in o.items()}))
                    for name, o in (plans or {}).items()
                }
            ),
        ),
    )


@cache
def shipped() -> Mapping[str, Definition]:
    catalog = load_definitions([DEFINITIONS])
    assert catalog.ok, [f.message for f in catalog.errors]
    return catalog.definitions
