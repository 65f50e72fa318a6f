"""The checks behind every health endpoint, ``opsctl check`` and the deploy gate.

Each check returns a :class:`CheckResult` in the IETF health-check vocabulary (``pass``,
``warn``, ``fail``) with a reason a person can act on and the value it observed. Checks never
raise for the condition they test: an unreachable dependency is a ``fail`` with its reason.

The vocabulary (:class:`CheckResult`, ``worst``) and the queue's verdict from a snapshot
(``queue_checks``, the heartbeat body) live in :mod:`opsctl.verdict`, which the deploy gate
imports without asyncio; the checks here need a connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from opsctl.constants import HEARTBEAT_TTL_S
from opsctl.errors import OpsctlError
from opsctl.settings import Settings
from opsctl.verdict import (
    CheckResult,
    QueueSnapshot,
)

CHECK_TIMEOUT_S = 3.0

if TYPE_CHECKING:  # kept out of the import path: the deploy gate starts on every deploy
    from opsctl.queue.base import QueueBackend
    from opsctl.secrets import SecretProvider
    from opsctl.store import Store


async def check_database(store: Store | None) -> CheckResult:
    """The database answers and its schema is at the version this opsctl expects."""
    from opsctl.store import migration_status

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


async def check_queue_backend(settings: Settings, queue: QueueBackend | None) -> CheckResult:
    """The queue's backend answers (Redis, or the embedded SQLite queue's file)."""
    backend = settings.queue_backend
    if queue is None:
        return CheckResult(
            "queue", "fail", "the queue backend is not connected", details={"backend": backend}
        )
    try:
        rtt = await asyncio.wait_for(queue.ping(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return CheckResult(
            "queue",
            "fail",
            f"the {backend} queue did not answer within {CHECK_TIMEOUT_S:.0f} s",
            details={"backend": backend},
        )
    except OpsctlError as exc:
        return CheckResult("queue", "fail", exc.message, details={"backend": backend})
    reason = f"{backend} queue reachable"
    if backend == "sqlite":
        reason = "embedded SQLite queue reachable (development only)"
    return CheckResult("queue", "pass", reason, round(rtt * 1000, 2), "ms", {"backend": backend})


async def run_checks(checks: Iterable[Callable[[], Awaitable[CheckResult]]]) -> list[CheckResult]:
    """Run checks concurrently; a check that raises becomes a ``fail`` naming the error."""

    async def guarded(check: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
        try:
            return await check()
        except Exception as exc:  # a bug in one check must not hide the others
            name = getattr(check, "check_name", getattr(check, "__name__", "check"))
            return CheckResult(name, "fail", f"check crashed: {type(exc).__name__}: {exc}")

    return list(await asyncio.gather(*(guarded(c) for c in checks)))


# --- the queue: reachable, workers alive, draining, nothing dead -------------------------


async def snapshot_queue(
    queue: QueueBackend | None,
    settings: Settings,
    *,
    ttl_s: float = HEARTBEAT_TTL_S,
    rate_limits: bool = False,
) -> QueueSnapshot:
    """Read stats and heartbeats (and, when asked, the rate limiter's counters, which only
    details and metrics show); an unreachable backend is recorded, never raised."""
    from redis.exceptions import RedisError

    from opsctl.connections import describe_redis_error

    backend = settings.queue_backend
    if queue is None:
        return QueueSnapshot(backend, error="the queue backend is not connected")
    try:
        # All three at once: the ping's round trip is timed on its own connection.
        rtt, stats, processes = await asyncio.wait_for(
            asyncio.gather(queue.ping(), queue.stats(), queue.heartbeats(ttl_s=ttl_s)),
            CHECK_TIMEOUT_S,
        )
    except TimeoutError:
        return QueueSnapshot(
            backend, error=f"the {backend} queue did not answer within {CHECK_TIMEOUT_S:.0f} s"
        )
    except OpsctlError as exc:
        return QueueSnapshot(backend, error=exc.message)
    except (RedisError, OSError) as exc:
        return QueueSnapshot(
            backend, error=describe_redis_error(settings.queue_redis_url or "", exc)
        )
    counters = await _rate_limits(queue, settings) if rate_limits else None
    return QueueSnapshot(backend, stats, tuple(processes), rtt, rate_limits=counters)


async def _rate_limits(queue: QueueBackend, settings: Settings) -> dict[str, Any] | None:
    """The limiter's counters (they live beside the queue); ``None`` when they cannot be read,
    which never fails a check."""
    from opsctl.connectors.limiter import read_counters

    try:
        counters = await asyncio.wait_for(read_counters(queue, settings), CHECK_TIMEOUT_S)
    except (TimeoutError, OpsctlError, OSError):
        return None
    return {"connectors": {name: c.to_json() for name, c in counters.items()}}


async def check_secrets(provider: SecretProvider | None) -> CheckResult:
    """The secret provider answers (one round trip; for aws a cheap Secrets Manager call)."""
    if provider is None:
        return CheckResult("secrets", "fail", "no secret provider is configured")
    details = {"provider": provider.name}
    try:
        rtt = await asyncio.wait_for(provider.ping(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return CheckResult(
            "secrets",
            "fail",
            f"the {provider.name} secret provider did not answer within {CHECK_TIMEOUT_S:.0f} s",
            details=details,
        )
    except OpsctlError as exc:
        return CheckResult("secrets", "fail", str(exc), details=details)
    return CheckResult(
        "secrets",
        "pass",
        f"{provider.name} secret provider reachable",
        round(rtt * 1000, 2),
        "ms",
        details,
    )


# --- connector definitions ---------------------------------------------------------------

REGISTRY_SHOWN_INVALID = 3


_REGISTRY_CACHE: dict[tuple[Any, ...], CheckResult] = {}


def _definitions_signature(settings: Settings) -> tuple[Any, ...]:
    """What the registry check depends on: every definition file's path, size and mtime."""
    files: list[tuple[str, int, int]] = []
    for root in settings.definitions_paths:
        if root.is_file():
            candidates = [root]
        elif root.is_dir():
            candidates = sorted(root.rglob("*.json"))
        else:
            candidates = []
        for path in candidates:
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((str(path), stat.st_size, stat.st_mtime_ns))
    return (
        settings.definitions_paths,
        settings.is_production,
        time.strftime("%Y-%m-%d"),
        tuple(files),
    )


def check_registry(settings: Settings) -> CheckResult:
    """The connector definitions under ``DEFINITIONS_PATH`` load and validate.

    ``pass`` with their count, ``warn`` when there are none (or a folder is missing), ``fail``
    naming the first few invalid files with their first error. Reads files: call it from a
    thread in an event loop. Validation runs again only when a file changed (readiness is
    polled every few seconds; validating every definition each time would cost a second).
    """
    signature = _definitions_signature(settings)
    cached = _REGISTRY_CACHE.get(signature)
    if cached is not None:
        return CheckResult(
            cached.name, cached.status, cached.reason, cached.observed, cached.unit, cached.details
        )
    result = _check_registry(settings)
    _REGISTRY_CACHE.clear()
    _REGISTRY_CACHE[signature] = result
    return result


def _check_registry(settings: Settings) -> CheckResult:
    from datetime import date
    from pathlib import Path

    from opsctl.connectors.loader import load_definitions

    paths = settings.definitions_paths
    present = [p for p in paths if p.exists()]
    missing = [str(p) for p in paths if not p.exists()]
    details: dict[str, Any] = {"paths": [str(p) for p in paths]}
    if missing:
        details["missing"] = missing

    def short(path: Path) -> str:
        for root in present:
            base = root.parent
            if path.is_relative_to(base):
                return str(path.relative_to(base))
        return str(path)

    try:
        catalog = load_definitions(
            present,
            allow_loopback_http=not settings.is_production,
            today=date.today(),
            display=short,
        )
    except (OpsctlError, OSError) as exc:
        return CheckResult("registry", "fail", f"cannot load definitions: {exc}", details=details)
    count = len(catalog.definitions)
    details.update(
        {"definitions": count, "files": len(catalog.reports), "invalid": len(catalog.invalid)}
    )
    if catalog.invalid:
        shown = []
        for report in catalog.invalid[:REGISTRY_SHOWN_INVALID]:
            first = report.errors[0]
            shown.append(f"{first.file}:{first.line}:{first.column} {first.code}: {first.message}")
        more = len(catalog.invalid) - len(shown)
        reason = f"{len(catalog.invalid)} invalid definition file(s): " + "; ".join(shown)
        if more:
            reason += f"; and {more} more (run: opsctl connectors validate)"
        return CheckResult("registry", "fail", reason, count, "definitions", details)
    if count == 0:
        where = ", ".join(str(p) for p in paths)
        suffix = " (folder missing)" if missing else ""
        return CheckResult(
            "registry",
            "warn",
            f"no connector definitions found in {where}{suffix}",
            0,
            "definitions",
            details,
        )
    if missing:
        return CheckResult(
            "registry",
            "warn",
            f"{count} connector definition(s) valid; missing folder(s): {', '.join(missing)}",
            count,
            "definitions",
            details,
        )
    return CheckResult(
        "registry", "pass", f"{count} connector definition(s) valid", count, "definitions", details
    )


async def check_oauth(
    settings: Settings,
    store: Store | None,
    provider: SecretProvider | None,
    *,
    catalog: Any = None,
) -> CheckResult:
    """Every ``stable`` oauth2 connector has a registered client whose secret resolves.

    ``fail`` naming the stable ones without a working client, ``warn`` naming the beta and
    experimental ones without any, ``pass`` otherwise. ``catalog`` (an
    :class:`~opsctl.connectors.loader.Catalog`) saves reading the definitions again.
    """
    from datetime import date

    from opsctl.connectors.loader import load_definitions
    from opsctl.connectors.overview import load_views
    from opsctl.connectors.registry import ConnectorRegistry
    from opsctl.secrets import check_reference

    if store is None:
        return CheckResult("oauth", "fail", "the database is not open")
    if catalog is None:
        present = [p for p in settings.definitions_paths if p.exists()]
        try:
            catalog = await asyncio.to_thread(
                load_definitions,
                present,
                allow_loopback_http=not settings.is_production,
                today=date.today(),
            )
        except (OpsctlError, OSError) as exc:
            return CheckResult("oauth", "fail", f"cannot load definitions: {exc}")
    try:
        views = await asyncio.wait_for(
            load_views(catalog, ConnectorRegistry(store)), CHECK_TIMEOUT_S
        )
    except TimeoutError:
        return CheckResult("oauth", "fail", "the registry did not answer in time")
    except OpsctlError as exc:
        return CheckResult("oauth", "fail", f"cannot read the registry: {exc.message}")
    oauth = [
        v
        for v in views
        if v.definition is not None
        and v.definition.auth.type == "oauth2"
        and v.stage in ("experimental", "beta", "stable")
    ]
    stable = [v for v in oauth if v.stage == "stable"]
    missing = [f"{v.id} (no client registered)" for v in stable if v.client is None]
    registered = [v for v in stable if v.client is not None]
    if registered and provider is None:
        missing += [f"{v.id} (no secret provider to resolve it)" for v in registered]
    elif registered and provider is not None:
        checks = await asyncio.gather(
            *(
                check_reference(provider, v.id, v.client.secret_ref, timeout_s=CHECK_TIMEOUT_S)
                for v in registered
                if v.client is not None
            )
        )
        missing += [f"{c.variable} ({c.reason})" for c in checks if c.status == "fail"]
    unregistered = [v.id for v in oauth if v.stage != "stable" and v.client is None]
    details: dict[str, Any] = {
        "connectors": len(oauth),
        "stable": [v.id for v in stable],
        "withoutClient": unregistered,
    }
    if missing:
        return CheckResult(
            "oauth",
            "fail",
            f"stable oauth2 connector(s) without a working client: {'; '.join(missing)}",
            len(missing),
            "connectors",
            details,
        )
    if unregistered:
        return CheckResult(
            "oauth",
            "warn",
            f"no OAuth client registered for {len(unregistered)} connector(s) not yet stable: "
            f"{', '.join(unregistered)}",
            len(unregistered),
            "connectors",
            details,
        )
    reason = (
        f"{len(oauth)} oauth2 connector(s), each with a registered client"
        if oauth
        else "no oauth2 connectors"
    )
    return CheckResult("oauth", "pass", reason, 0, "connectors", details)


async def check_keys(settings: Settings, store: Store | None) -> CheckResult:
    """The master key can be read, the active data key unwraps under it, and it is current.

    ``fail`` when the master key is missing or unreadable, or when the active data key was
    wrapped by another master key (a process started with another ``OPSCTL_MASTER_KEY_REF``, or
    another dev keyring file, on the same database: it could not read a stored credential);
    ``warn`` when no data key exists yet (the first one is made on first use) or the active one
    is past its maximum age (is the encryption-rotation daemon running?).
    """
    from opsctl.crypto import MasterKeyError, check_active_key
    from opsctl.crypto.keys import key_status
    from opsctl.crypto.master import master_key_source

    if store is None:
        return CheckResult("keys", "fail", "the database is not open")
    try:
        source = master_key_source(settings)
    except OpsctlError as exc:
        return CheckResult("keys", "fail", exc.message)
    try:
        proof = await asyncio.wait_for(
            check_active_key(store, settings, source=source), CHECK_TIMEOUT_S
        )
        status = await asyncio.wait_for(key_status(store), CHECK_TIMEOUT_S)
    except TimeoutError:
        return CheckResult(
            "keys",
            "fail",
            f"the master key ({source.description}) was not read within {CHECK_TIMEOUT_S:.0f} s",
        )
    except OpsctlError as exc:
        reason = exc.message
        if not isinstance(exc, MasterKeyError) and source.description not in reason:
            reason = f"master key ({source.description}): {reason}"  # the provider failed
        return CheckResult("keys", "fail", reason, details={"masterKey": source.description})
    finally:
        await source.close()
    details = {
        "masterKey": source.description,
        "masterKeys": proof.masters,
        "activeKey": status["active"],
        "activeKeyUnwraps": proof.active is not None,
        "pendingRows": status["pending"],
    }
    active = next((k for k in status["keys"] if k["id"] == status["active"]), None)
    if active is None:
        return CheckResult(
            "keys", "warn", "no data key yet (the first is made on first use)", details=details
        )
    max_age_s = settings.key_max_age_days * 86_400
    age_days = round(active["age_s"] / 86_400, 1)
    if active["age_s"] > max_age_s * 1.1:
        return CheckResult(
            "keys",
            "warn",
            f"active key {status['active']} is {age_days} days old "
            f"(maximum {settings.key_max_age_days:g}); is the encryption-rotation "
            "daemon running?",
            age_days,
            "days",
            details,
        )
    reason = f"active key {status['active']}, {age_days} days old, unwraps under this master key"
    if status["pending"]:
        reason += f"; {status['pending']} row(s) still on older keys (rotation under way)"
    return CheckResult("keys", "pass", reason, age_days, "days", details)
