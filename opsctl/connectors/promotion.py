"""Promotion and demotion of connectors between stages, with the conditions for ``stable``.

A connector becomes ``stable`` only when (docs/connectors.md) its definition validates, an API
client is registered for it and resolves through the secret provider, and its ``check``
operation succeeds through the executor with those credentials (for oauth2, those of a given
connection). Every condition is evaluated and reported at once; a refusal lists them all.
Other moves (up to ``beta``, down to anything) need no checks. Every change is audited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from opsctl.connectors.clients import (
    client_kind,
    register_command,
    resolve_client,
)
from opsctl.connectors.credentials import CredentialSource
from opsctl.connectors.executor_input import config_problems, describe_problems
from opsctl.connectors.loader import Catalog
from opsctl.connectors.model import Definition, ReleaseStage
from opsctl.connectors.registry import (
    PROMOTION_ORDER,
    ConnectorRecord,
    ConnectorRegistry,
    effective_stage,
    next_stage,
    previous_stage,
)
from opsctl.connectors.validator import FileReport
from opsctl.errors import NotFound, OpsctlError, UsageError
from opsctl.secrets import SecretProvider, redact

CHECK_TIMEOUT_S = 60.0
SHOWN_ERRORS = 3

ConditionStatus = Literal["pass", "fail", "skip"]
Outcome = Literal["changed", "unchanged", "refused"]


@dataclass(frozen=True)
class Condition:
    """One condition of promotion to ``stable``: ``skip`` when it could not be evaluated
    because another one failed (the failing one carries the reason)."""

    name: str
    status: ConditionStatus
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class StageChange:
    connector_id: str
    before: ReleaseStage | None
    after: ReleaseStage
    outcome: Outcome
    conditions: tuple[Condition, ...] = ()
    record: ConnectorRecord | None = None

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.reason}" for c in self.conditions if c.status == "fail"]

    def to_json(self) -> dict[str, Any]:
        return {
            "connector": self.connector_id,
            "from": self.before,
            "to": self.after,
            "status": self.outcome,
            "reasons": self.reasons,
            "conditions": [c.to_json() for c in self.conditions],
            "record": self.record.to_json() if self.record else None,
        }


@dataclass(frozen=True)
class CheckContext:
    """What running the ``check`` operation needs: the credentials and an HTTP session."""

    credentials: CredentialSource
    session: aiohttp.ClientSession
    connection_id: str | None = None
    config: Mapping[str, Any] | None = field(default=None, hash=False)
    allow_loopback_http: bool = False
    """Plain http to 127.0.0.1/localhost (a local stand-in vendor); never in production."""
    timeout_s: float = CHECK_TIMEOUT_S


def _report(catalog: Catalog, connector_id: str) -> FileReport | None:
    return next((r for r in catalog.reports if r.connector_id == connector_id), None)


async def _current(
    catalog: Catalog, registry: ConnectorRegistry, connector_id: str
) -> tuple[Definition | None, FileReport | None, ConnectorRecord | None, ReleaseStage | None]:
    """The connector's definition, file report, registry row and stage (``None``: a file that
    declares it but does not validate, and no registry row). :class:`NotFound` when unknown."""
    definition = catalog.definitions.get(connector_id)
    report = _report(catalog, connector_id)
    record = await registry.connector(connector_id)
    stage = effective_stage(definition, record)
    if stage is None and report is None:
        known = ", ".join(sorted(catalog.definitions)) or "none"
        raise NotFound(
            f"unknown connector {connector_id!r} (known: {known})",
            hint="check DEFINITIONS_PATH",
        )
    return definition, report, record, stage


def _rank(stage: ReleaseStage) -> int:
    return PROMOTION_ORDER.index(stage) if stage in PROMOTION_ORDER else -1


def promotion_target(current: ReleaseStage, to: ReleaseStage | None) -> ReleaseStage:
    """Where ``promote`` goes: ``to``, or one rung up (``stable`` stays, to be re-checked)."""
    if to is None:
        if current == "stable":
            return "stable"
        target = next_stage(current)
        if target is None:
            raise UsageError(f"a {current} connector has no next stage; give --to STAGE")
        return target
    if to == "deprecated":
        raise UsageError("deprecating is a demotion: use opsctl connectors demote --to deprecated")
    if current != "deprecated" and _rank(to) < _rank(current):
        raise UsageError(f"{to} is below {current}: use opsctl connectors demote --to {to}")
    return to


def demotion_target(current: ReleaseStage, to: ReleaseStage | None) -> ReleaseStage:
    """Where ``demote`` goes: ``to``, or one rung down."""
    if to is None:
        target = previous_stage(current)
        if target is None:
            raise UsageError(
                f"a {current} connector has no lower stage; give --to deprecated to retire it"
            )
        return target
    if to != "deprecated" and (current == "deprecated" or _rank(to) > _rank(current)):
        raise UsageError(f"{to} is above {current}: use opsctl connectors promote --to {to}")
    return to


async def promote(
    catalog: Catalog,
    registry: ConnectorRegistry,
    provider: SecretProvider,
    connector_id: str,
    *,
    who: str,
    to: ReleaseStage | None = None,
    check: CheckContext | None = None,
) -> StageChange:
    """Move a connector up; to ``stable`` only when every condition holds.

    ``catalog`` must be loaded with the rules of the environment (no loopback http in
    production). ``check`` runs the check operation; without it that condition fails.
    """
    definition, report, record, current = await _current(catalog, registry, connector_id)
    if current is None:  # an invalid file the registry has never seen
        refusal = (_definition_condition(connector_id, None, report),)
        return StageChange(connector_id, None, to or "beta", "refused", refusal, None)
    target = promotion_target(current, to)
    conditions: tuple[Condition, ...] = ()
    if target == "stable":
        conditions = tuple(
            await stable_conditions(catalog, registry, provider, connector_id, check=check)
        )
        if any(c.status == "fail" for c in conditions):
            return StageChange(connector_id, current, target, "refused", conditions, record)
    elif definition is None:
        return StageChange(
            connector_id,
            current,
            target,
            "refused",
            (_definition_condition(connector_id, None, report),),
            record,
        )
    if target == current and target != "stable":
        return StageChange(connector_id, current, target, "unchanged", conditions, record)
    _, after = await registry.set_stage(
        connector_id, target, definition=definition, who=who, action="stage.promote"
    )
    return StageChange(connector_id, current, target, "changed", conditions, after)


async def demote(
    catalog: Catalog,
    registry: ConnectorRegistry,
    connector_id: str,
    *,
    who: str,
    to: ReleaseStage | None = None,
) -> StageChange:
    """Move a connector down (or to ``deprecated``); no conditions, even for a broken file."""
    definition, report, record, current = await _current(catalog, registry, connector_id)
    if current is None:
        raise UsageError(
            f"connector {connector_id!r} has no valid definition and no registry entry, so it "
            "has no stage to demote from",
            hint=f"fix it first: opsctl connectors validate {report.file if report else ''}",
        )
    target = demotion_target(current, to)
    if target == current:
        return StageChange(connector_id, current, target, "unchanged", (), record)
    _, after = await registry.set_stage(
        connector_id, target, definition=definition, who=who, action="stage.demote"
    )
    return StageChange(connector_id, current, target, "changed", (), after)


# --- the conditions for stable -----------------------------------------------------------


def _definition_condition(
    connector_id: str, definition: Definition | None, report: FileReport | None
) -> Condition:
    if definition is not None:
        warnings = len(report.warnings) if report else 0
        extra = f", {warnings} warning(s)" if warnings else ""
        return Condition(
            "definition",
            "pass",
            f"valid (version {definition.version}, digest {definition.digest[:12]}{extra})",
        )
    if report is None:
        return Condition("definition", "fail", f"no definition file declares {connector_id!r}")
    errors = report.errors
    shown = "; ".join(
        f"{f.file}:{f.line}:{f.column} {f.code}: {f.message}" for f in errors[:SHOWN_ERRORS]
    )
    more = f"; and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
    return Condition(
        "definition",
        "fail",
        f"{len(errors)} error(s): {shown}{more} (run: opsctl connectors validate {report.file})",
    )


async def stable_conditions(
    catalog: Catalog,
    registry: ConnectorRegistry,
    provider: SecretProvider,
    connector_id: str,
    *,
    check: CheckContext | None,
) -> list[Condition]:
    """Every condition of ``stable``, each evaluated as far as the others allow."""
    definition = catalog.definitions.get(connector_id)
    conditions = [_definition_condition(connector_id, definition, _report(catalog, connector_id))]
    client = await registry.client(connector_id)
    kind = client_kind(definition) if definition is not None else None
    secret_ok = False
    if definition is not None and kind is None:
        conditions.append(Condition("client", "pass", "auth type none needs no API client"))
        secret_ok = True
    elif client is None:
        hint = register_command(definition) if definition else "opsctl connectors register-client"
        conditions.append(Condition("client", "fail", f"no API client is registered (run: {hint})"))
        conditions.append(Condition("secret", "skip", "no client to resolve"))
    else:
        if definition is not None and kind is not None and client.kind != kind:
            conditions.append(
                Condition(
                    "client",
                    "fail",
                    f"the registered client is {client.kind} but {definition.auth.type} "
                    f"auth needs {kind} (re-register it)",
                )
            )
        else:
            shown = f"client id {client.client_id}" if client.client_id else "API key"
            conditions.append(
                Condition("client", "pass", f"{shown} registered by {client.registered_by}")
            )
        try:
            resolved = await resolve_client(registry, provider, connector_id)
        except OpsctlError as exc:
            conditions.append(
                Condition(
                    "secret",
                    "fail",
                    f"{client.secret_ref} does not resolve: {redact(exc.message)}",
                )
            )
        else:
            secret_ok = True
            conditions.append(
                Condition(
                    "secret",
                    "pass",
                    f"{client.secret_ref} resolves (fingerprint {resolved.fingerprint})",
                )
            )
    conditions.extend(await _check_conditions(registry, definition, check, secret_ok))
    return conditions


async def _check_conditions(
    registry: ConnectorRegistry,
    definition: Definition | None,
    check: CheckContext | None,
    secret_ok: bool,
) -> list[Condition]:
    """The connection (oauth2) and the check operation's run."""
    out: list[Condition] = []
    if definition is None:
        return [Condition("check", "skip", "not run: the definition does not validate")]
    if check is None:
        return [Condition("check", "fail", "not run: no executor was given to run it")]
    connection_id = check.connection_id
    config: Mapping[str, Any] = check.config or {}
    usable = secret_ok
    if definition.auth.type == "oauth2":
        usable = False
        chosen = ""
        if connection_id is None:  # the connector's only active connection, when it has one
            connections = await registry.connections(definition.id)
            active = [c.id for c in connections if c.status == "active"]
            if len(active) == 1:
                connection_id, chosen = active[0], " (the connector's only active connection)"
            elif active:
                out.append(
                    Condition(
                        "connection",
                        "fail",
                        f"oauth2: {len(active)} active connections; give --connection ID, "
                        f"one of {', '.join(active)}",
                    )
                )
            else:
                out.append(
                    Condition(
                        "connection",
                        "fail",
                        "oauth2: the check needs an authorised connection: give --connection "
                        f"ID (authorise one at GET /api/oauth/{definition.id}/authorize)",
                    )
                )
        if connection_id is not None:
            try:
                connection = await registry.require_connection(connection_id, definition.id)
            except OpsctlError as exc:
                out.append(Condition("connection", "fail", exc.message))
            else:
                if connection.status != "active":
                    out.append(
                        Condition(
                            "connection",
                            "fail",
                            f"{connection_id} needs to be authorised again "
                            f"({connection.status_reason or connection.status})",
                        )
                    )
                else:
                    usable = True
                    out.append(
                        Condition("connection", "pass", f"{connection_id} is active{chosen}")
                    )
                    if check.config is None:
                        config = connection.config
    elif connection_id is not None:
        try:
            await registry.require_connection(connection_id, definition.id)
            usable = True
        except OpsctlError as exc:
            out.append(Condition("connection", "fail", exc.message))
            usable = False
    problems = config_problems(definition, dict(config))
    if problems:
        out.append(
            Condition(
                "check",
                "fail",
                "not run: "
                + describe_problems("the connection config", problems)
                + " (give --config JSON)",
            )
        )
        return out
    if not usable:
        out.append(Condition("check", "skip", "not run: no usable credentials (see above)"))
        return out
    out.append(await run_check(definition, check, connection_id, config))
    return out


async def run_check(
    definition: Definition,
    check: CheckContext,
    connection_id: str | None,
    config: Mapping[str, Any],
) -> Condition:
    """Run the definition's check operation through the executor; its outcome as a condition."""
    from opsctl.connectors.executor import execute

    operation = definition.check
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(
            execute(
                definition,
                operation,
                {},
                credentials=check.credentials,
                connection_id=connection_id,
                config=config,
                session=check.session,
                allow_loopback_http=check.allow_loopback_http,
            ),
            check.timeout_s,
        )
    except TimeoutError:
        return Condition(
            "check", "fail", f"{operation} did not finish within {check.timeout_s:.0f} s"
        )
    except OpsctlError as exc:
        return Condition("check", "fail", f"{operation} could not run: {redact(exc.message)}")
    elapsed_ms = (time.perf_counter() - started) * 1000
    http = f"HTTP {result.http_status}" if result.http_status is not None else "no response"
    if result.status == "succeeded":
        return Condition("check", "pass", f"{operation} succeeded ({http}, {elapsed_ms:.0f} ms)")
    if result.status == "rescheduled":
        return Condition(
            "check",
            "fail",
            f"{operation} was throttled by the vendor ({http}); try again later",
        )
    error = result.error or result.reason or "no detail"
    return Condition("check", "fail", f"{operation} failed ({http}): {redact(error)}")
