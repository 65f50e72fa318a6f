"""Executions: what is asked, whether it may run here, its job, and how it reads back.

One module behind ``POST/GET /api/executions``, ``opsctl run`` and the ``connector.execute``
job, so all three refuse the same things with the same sentences: an unknown connector or
operation, a connector that is not ``stable`` where only stable ones run (production, or
``GENERIC_EXECUTOR_ENABLED=false``), a connection of another connector, and input or config
that breaks its schema (every problem listed). The execution id is the job id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

from opsctl.connectors._collect import did_you_mean
from opsctl.connectors.executor_input import (
    InputProblem,
    config_problems,
    describe_problems,
    input_problems,
)
from opsctl.connectors.loader import DefinitionPathError, load_definitions
from opsctl.connectors.model import Definition, ReleaseStage
from opsctl.connectors.registry import ConnectorRegistry, effective_stage
from opsctl.errors import EXIT_USAGE, OpsctlError
from opsctl.queue import JobInfo, NewJob, QueueBackend
from opsctl.queue.kinds import CONNECTOR_EXECUTE
from opsctl.settings import Settings

EXECUTION_MAX_ATTEMPTS: Final = 5
"""Failed runs an execution job may take (reschedules after a long vendor wait do not count)."""
CATALOG_RELOAD_S: Final = 2.0
"""An unknown connector id reloads the definitions at most this often."""
STAGE_TTL_S: Final = 1.0
"""How long a connector's registry stage is trusted before it is read again: a promotion or
demotion takes effect within this long, without a database read per execution."""
TERMINAL: Final = frozenset({"succeeded", "failed"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})


# --- refusals ------------------------------------------------------------------------------


class ExecutionRefused(OpsctlError):
    """An execution that will not run. ``http_status`` is the API's answer, ``reason`` a stable
    code, ``problems`` every schema problem (for ``invalid_input`` and ``invalid_config``)."""

    exit_code = EXIT_USAGE
    http_status = 422
    reason = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        problems: tuple[InputProblem, ...] = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems
        if reason is not None:
            self.reason = reason

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "reason": self.reason}
        if self.hint:
            body["hint"] = self.hint
        if self.problems:
            body["problems"] = [p.to_json() for p in self.problems]
        return body


class UnknownConnector(ExecutionRefused):
    http_status = 404
    reason = "unknown_connector"


class UnknownOperation(ExecutionRefused):
    http_status = 404
    reason = "unknown_operation"


class UnknownConnection(ExecutionRefused):
    http_status = 404
    reason = "unknown_connection"


class NotRunnable(ExecutionRefused):
    """Only stable connectors run here, and this one is not."""

    http_status = 403
    reason = "not_stable"


# --- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionRequest:
    """``{connector, operation, input, connection, config}``: the body of ``POST
    /api/executions``, the payload of its job, and what ``opsctl run`` sends."""

    connector: str
    operation: str
    input: Mapping[str, Any] = field(default_factory=dict, hash=False)
    connection: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, body: Any) -> ExecutionRequest:
        """Parse a request; :class:`ExecutionRefused` listing every malformed field."""
        if not isinstance(body, dict):
            raise ExecutionRefused(
                "the request must be a JSON object: "
                '{"connector": …, "operation": …, "input": {…}, "connection": …, "config": {…}}'
            )
        problems: list[InputProblem] = []
        known = ("connector", "operation", "input", "connection", "config")
        for key in body:
            if key not in known:
                hint = did_you_mean(key, known)
                problems.append(
                    InputProblem(f"/{key}", "unknown field" + (f" ({hint})" if hint else ""))
                )
        for key in ("connector", "operation"):
            value = body.get(key)
            if not isinstance(value, str) or not value:
                problems.append(InputProblem(f"/{key}", "required: a non-empty string"))
        connection = body.get("connection")
        if connection is not None and (not isinstance(connection, str) or not connection):
            problems.append(InputProblem("/connection", "must be a non-empty string or null"))
        for key in ("input", "config"):
            value = body.get(key)
            if value is not None and not isinstance(value, dict):
                problems.append(InputProblem(f"/{key}", "must be a JSON object"))
        if problems:
            raise ExecutionRefused(
                describe_problems("the request", problems), problems=tuple(problems)
            )
        return cls(
            body["connector"],
            body["operation"],
            body.get("input") or {},
            connection,
            body.get("config") or {},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "operation": self.operation,
            "input": dict(self.input),
            "connection": self.connection,
            "config": dict(self.config),
        }


@dataclass(frozen=True)
class Admitted:
    """An execution that may run: its definition, and the config to run it with (the
    connection's config overlaid with the request's)."""

    request: ExecutionRequest
    definition: Definition
    config: Mapping[str, Any]
    stage: ReleaseStage


# --- what decides ----------------------------------------------------------------------------


class CatalogSource(Protocol):
    async def get(self, connector_id: str) -> Definition | None: ...

    async def ids(self) -> list[str]: ...


class CatalogCache:
    """The valid definitions under ``DEFINITIONS_PATH``, loaded off the event loop, and loaded
    again (at most every :data:`CATALOG_RELOAD_S`) when asked for an id they lack."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._definitions: Mapping[str, Definition] = _EMPTY
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        self.problem: str | None = None
        """Why no definitions could be read (a missing folder), for refusals."""

    async def get(self, connector_id: str) -> Definition | None:
        found = self._definitions.get(connector_id)
        if found is None and self._stale():
            await self.reload()
            found = self._definitions.get(connector_id)
        return found

    async def ids(self) -> list[str]:
        if self._loaded_at is None:
            await self.reload()
        return sorted(self._definitions)

    def _stale(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at >= CATALOG_RELOAD_S

    def seed(self, definitions: Mapping[str, Definition]) -> None:
        """Start from definitions another part of the process has just loaded (the web daemon
        reads the folder once at start-up, not once per user of it)."""
        self._definitions = definitions
        self._loaded_at = self._clock()
        if not definitions and not any(p.exists() for p in self._settings.definitions_paths):
            where = ", ".join(str(p) for p in self._settings.definitions_paths)
            self.problem = f"no definitions folder exists ({where}); set DEFINITIONS_PATH"

    async def reload(self) -> None:
        async with self._lock:
            if self._loaded_at is not None and not self._stale():
                return  # another caller reloaded while this one waited
            self._definitions, self.problem = await asyncio.to_thread(self._load)
            self._loaded_at = self._clock()

    def _load(self) -> tuple[Mapping[str, Definition], str | None]:
        settings = self._settings
        existing = [p for p in settings.definitions_paths if p.exists()]
        if not existing:
            where = ", ".join(str(p) for p in settings.definitions_paths)
            return _EMPTY, f"no definitions folder exists ({where}); set DEFINITIONS_PATH"
        try:
            catalog = load_definitions(existing, allow_loopback_http=not settings.is_production)
        except DefinitionPathError as exc:
            return _EMPTY, str(exc)
        return catalog.definitions, None


class StageCache:
    """Each connector's stage as the registry records it (the definition's ``release_stage``
    without a registry row), trusted for :data:`STAGE_TTL_S`; concurrent callers share one
    read."""

    def __init__(
        self, registry: ConnectorRegistry | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._seen: dict[str, tuple[float, ReleaseStage]] = {}
        self._reading: dict[str, asyncio.Future[ReleaseStage]] = {}

    async def stage(self, definition: Definition) -> ReleaseStage:
        if self._registry is None:
            return definition.release_stage
        cached = self._seen.get(definition.id)
        if cached is not None and self._clock() - cached[0] < STAGE_TTL_S:
            return cached[1]
        reading = self._reading.get(definition.id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(self._registry, definition))
            self._reading[definition.id] = reading
            reading.add_done_callback(self._forget)
        return await asyncio.shield(reading)

    def _forget(self, reading: asyncio.Future[ReleaseStage]) -> None:
        for connector_id, pending in list(self._reading.items()):
            if pending is reading:
                del self._reading[connector_id]
        if not reading.cancelled():
            reading.exception()  # retrieved, even when every caller left

    async def _read(self, registry: ConnectorRegistry, definition: Definition) -> ReleaseStage:
        record = await registry.connector(definition.id)
        stage = effective_stage(definition, record) or definition.release_stage
        self._seen[definition.id] = (self._clock(), stage)
        return stage


def refusal(settings: Settings, definition: Definition, stage: ReleaseStage) -> str | None:
    """Why ``definition`` may not run here, or ``None`` when it may."""
    if stage == "stable" or settings.generic_executor_active:
        return None
    where = "in production" if settings.is_production else "with GENERIC_EXECUTOR_ENABLED=false"
    return f"connector {definition.id!r} is {stage}: {where}, only stable connectors run"


class Admission:
    """Decides whether an execution may be queued (API, CLI) or run (worker)."""

    def __init__(
        self,
        settings: Settings,
        catalog: CatalogSource,
        *,
        registry: ConnectorRegistry | None = None,
        stages: StageCache | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.registry = registry
        self.stages = stages or StageCache(registry)

    async def admit(self, request: ExecutionRequest) -> Admitted:
        """The execution with its definition and config; :class:`ExecutionRefused` else."""
        definition = await self.catalog.get(request.connector)
        if definition is None:
            raise await self._unknown_connector(request.connector)
        operation = definition.operations_by_id.get(request.operation)
        if operation is None:
            ops = sorted(definition.operations_by_id)
            hint = did_you_mean(request.operation, ops)
            raise UnknownOperation(
                f"connector {definition.id!r} has no operation {request.operation!r}"
                + (f" ({hint})" if hint else ""),
                hint="its operations: " + ", ".join(ops),
            )
        stage = await self.stages.stage(definition)
        why = refusal(self.settings, definition, stage)
        if why is not None:
            raise NotRunnable(
                why,
                hint=f"promote it (opsctl connectors promote {definition.id} --to stable)"
                + ("" if self.settings.is_production else " or set GENERIC_EXECUTOR_ENABLED=true"),
            )
        if request.connection is None and definition.auth.type == "oauth2":
            raise ExecutionRefused(
                f"connector {definition.id!r} uses oauth2: an execution needs a connection",
                hint=f"authorise one (GET /api/oauth/{definition.id}/authorize) and pass its id",
                reason="missing_connection",
            )
        config = dict(request.config)
        if request.connection is not None and self.registry is not None:
            connection = await self.registry.connection(request.connection)
            if connection is None or connection.connector_id != definition.id:
                owner = "" if connection is None else f" (it belongs to {connection.connector_id})"
                raise UnknownConnection(
                    f"connector {definition.id!r} has no connection {request.connection!r}{owner}"
                )
            config = {**connection.config, **config}
        problems = input_problems(definition, operation, dict(request.input))
        if problems:
            raise ExecutionRefused(
                describe_problems("input", problems),
                problems=tuple(problems),
                reason="invalid_input",
            )
        problems = config_problems(definition, config)
        if problems:
            raise ExecutionRefused(
                describe_problems("config", problems),
                problems=tuple(problems),
                reason="invalid_config",
            )
        return Admitted(request, definition, config, stage)

    async def _unknown_connector(self, connector_id: str) -> UnknownConnector:
        ids = await self.catalog.ids()
        hint = did_you_mean(connector_id, ids)
        message = f"unknown connector {connector_id!r}" + (f" ({hint})" if hint else "")
        problem = getattr(self.catalog, "problem", None)
        if problem:
            return UnknownConnector(message, hint=problem)
        known = ", ".join(ids) if ids else "none"
        return UnknownConnector(message, hint=f"known connectors: {known}")


# --- the job -------------------------------------------------------------------------------


async def enqueue_execution(
    queue: QueueBackend, request: ExecutionRequest, *, idempotency_key: str | None = None
) -> str:
    """Queue the execution as a ``connector.execute`` job; its id is the execution id."""
    return await queue.enqueue(
        NewJob(
            CONNECTOR_EXECUTE,
            request.to_json(),
            max_attempts=EXECUTION_MAX_ATTEMPTS,
            idempotency_key=idempotency_key,
        )
    )


def execution_view(info: JobInfo) -> dict[str, Any]:
    """An execution's job as ``GET /api/executions/{id}`` and ``opsctl run --json`` show it.

    ``status``: ``queued`` (waiting for a worker), ``scheduled`` (waiting in the delayed set: a
    retry, or a reschedule after a long vendor wait), ``running``, then ``succeeded`` or
    ``failed``.
    """
    payload = info.payload if isinstance(info.payload, dict) else {}
    result = info.result if isinstance(info.result, dict) else None
    error: str | None = None
    if info.status == "done" and result is not None:
        status = "succeeded" if result.get("status") == "succeeded" else "failed"
        error = result.get("error")
    elif info.status == "done":
        status, error = "failed", "the job finished without an execution result"
    elif info.status == "dead":
        status, error = "failed", info.last_error
    else:
        status = {"ready": "queued", "delayed": "scheduled", "active": "running"}[info.status]
    queued_ms = None
    if info.started_at is not None:
        queued_ms = round(max(0.0, info.started_at - info.created_at) * 1000, 3)
    return {
        "id": info.id,
        "status": status,
        "connector": payload.get("connector"),
        "operation": payload.get("operation"),
        "connection": payload.get("connection"),
        "attempts": info.attempts,
        "maxAttempts": info.max_attempts,
        "error": error,
        "lastError": info.last_error,
        "deferredReason": info.deferred_reason,
        "result": result,
        "timings": {
            "createdAt": info.created_at,
            "startedAt": info.started_at,
            "finishedAt": info.finished_at,
            "runAt": info.run_at if info.status == "delayed" else None,
            "queuedMs": queued_ms,
            "totalMs": (
                round((info.finished_at - info.created_at) * 1000, 3)
                if info.finished_at is not None and status in TERMINAL
                else None
            ),
        },
    }
