"""Definitions, request scopes and limiter states for the limiter tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from opsctl.connectors.executor import RequestScope
from opsctl.connectors.limiter import SharedLimiter
from opsctl.connectors.limiter_state import RedisState, SQLiteState
from opsctl.connectors.model import Definition
from opsctl.connectors.validator import validate_bytes
from opsctl.settings import load_settings

SOURCE = {"url": "https://docs.acme.example/limits", "as_of": "2026-11-29"}


def policy(pid: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"id": pid, "kind": kind, "scope": ["credential"], "source": SOURCE, **fields}


def definition(
    *policies: dict[str, Any],
    base_url: str = "https://api.acme.example",
    operations: list[dict[str, Any]] | None = None,
    signals: dict[str, Any] | None = None,
    **extra: Any,
) -> Definition:
    """A valid definition with these policies (the validator must find no error)."""
    doc: dict[str, Any] = {
        "schema_version": "1",
        "id": "acme",
        "version": "1.0.0",
        "display_name": "Acme",
        "docs_url": "https://docs.acme.example",
        "release_stage": "experimental",
        "base_url": base_url,
        "auth": {"type": "none"},
        "rate_limits": {"policies": list(policies), "signals": signals or {}},
        "retry": {"max_attempts": 3, "initial_delay_s": 0.01, "max_delay_s": 0.05},
        "operations": operations or [{"id": "ping", "method": "GET", "path": "/ping"}],
        "check": "ping",
    }
    doc.update(copy.deepcopy(extra))
    report = validate_bytes(json.dumps(doc))
    errors = [f"{f.pointer} {f.code} {f.message}" for f in report.errors]
    assert not errors, errors
    assert report.definition is not None
    return report.definition


def scope(
    operation: str = "ping", path: str = "/ping", *, connection: str = "conn_1", method: str = "GET"
) -> RequestScope:
    """A fresh scope object (the executor makes one per request)."""
    return RequestScope("acme", operation, method, path, connection, None, {})


async def open_state(
    backend: str, *, redis_url: str, prefix: str, sqlite_path: Path, lease_s: float = 60.0
) -> RedisState | SQLiteState:
    """A state on its own connection; every state opened with the same prefix or file shares
    every budget."""
    if backend == "redis":
        settings = load_settings(
            {"QUEUE_REDIS_URL": redis_url, "OPSCTL_REDIS_PREFIX": prefix},
            cwd=sqlite_path.parent,
        )
        return await RedisState.open(settings, lease_s=lease_s)
    return await SQLiteState.open(sqlite_path, lease_s=lease_s)


async def admitted(limiter: SharedLimiter, defn: Definition, n: int, **kw: Any) -> list[bool]:
    op = defn.operation(kw.pop("operation", "ping"))
    out = []
    for _ in range(n):
        out.append(await limiter.acquire(defn, op, scope(op.id, op.path, **kw)) is None)
    return out
