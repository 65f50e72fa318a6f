"""Job kinds: a registry of named async handlers, the built-in kinds, and loading more of them.

A module adds kinds by decorating handlers with a registry's :meth:`KindRegistry.kind`::

    from opsctl.queue.kinds import registry

    @registry.kind("reports.build", timeout_s=120, max_attempts=3)
    async def build(payload, ctx):
        ...

The worker imports such modules with ``--import MODULE`` or ``OPSCTL_JOB_MODULES``.

Kinds that share per-process objects (an HTTP session, loaded definitions) register a
:class:`Resources` factory with :meth:`KindRegistry.resource`; the worker opens each on first
use and closes them when it stops. A handler that must wait longer than it should hold a
worker raises :class:`Reschedule`.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any

from opsctl.constants import JOB_TIMEOUT_S
from opsctl.errors import ConfigError
from opsctl.queue.base import Job
from opsctl.settings import Settings

_KIND_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}")


ResourceFactory = Callable[[Settings], AbstractAsyncContextManager[Any]]
"""Opens a per-worker resource for the settings; the context manager's exit closes it."""


class Resources:
    """The per-worker resources of a registry's kinds: each opened by its factory on first use
    and closed, in reverse order of opening, by :meth:`aclose` when the worker stops."""

    def __init__(self, factories: Mapping[str, ResourceFactory], settings: Settings) -> None:
        self._factories = dict(factories)
        self._settings = settings
        self._open: dict[str, Any] = {}
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> Any:
        """The resource ``name``, opened now if this is its first use (a failure to open is
        raised to the handler, and the next use tries again)."""
        try:
            return self._open[name]
        except KeyError:
            pass
        async with self._lock:
            if name not in self._open:
                factory = self._factories.get(name)
                if factory is None:
                    raise ConfigError(f"no job resource named {name!r} is registered")
                self._open[name] = await self._stack.enter_async_context(factory(self._settings))
            return self._open[name]

    async def aclose(self) -> None:
        async with self._lock:
            self._open.clear()
            await self._stack.aclose()


class Reschedule(Exception):
    """Raised by a handler: run this job again at ``at`` (epoch seconds) through the delayed set.

    Not a failure: the worker logs no warning, applies no backoff and does not count it as
    failed; the queue's ``defer`` puts the job in the delayed set without counting the run, so
    a job may reschedule itself any number of times.
    """

    def __init__(self, at: float, reason: str) -> None:
        super().__init__(reason)
        self.at = at
        self.reason = reason


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler knows about the run it is part of."""

    job: Job
    worker_id: str
    """``host:pid`` of the worker running it."""
    resources: Resources | None = None
    """The worker's shared resources (``None`` outside a worker)."""


Handler = Callable[[Any, JobContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class JobKind:
    """A named handler with its limits."""

    name: str
    handler: Handler
    timeout_s: float = JOB_TIMEOUT_S
    """A run still going after this long is cancelled and fails (then retries)."""
    max_attempts: int | None = None
    """Runs before the job is dead-lettered; None keeps the limit the job was enqueued with."""


def check_kind_name(name: str) -> str:
    """``name`` when it is a usable kind name, else a :class:`ConfigError` saying why."""
    if not _KIND_NAME.fullmatch(name):
        raise ConfigError(
            f"job kind name {name!r} is not valid",
            hint="use 1-100 letters, digits or '_.:-', not starting with a punctuation mark",
        )
    return name


class KindRegistry:
    """Kind name → :class:`JobKind`."""

    def __init__(
        self,
        kinds: Iterable[JobKind] = (),
        resources: Mapping[str, ResourceFactory] | None = None,
    ) -> None:
        self._kinds: dict[str, JobKind] = {}
        self._resources: dict[str, ResourceFactory] = dict(resources or {})
        for kind in kinds:
            self.add(kind)

    def add(self, kind: JobKind) -> JobKind:
        check_kind_name(kind.name)
        if kind.timeout_s <= 0:
            raise ConfigError(f"job kind {kind.name!r}: timeout_s must be positive")
        if kind.max_attempts is not None and kind.max_attempts < 1:
            raise ConfigError(f"job kind {kind.name!r}: max_attempts must be at least 1")
        existing = self._kinds.get(kind.name)
        if existing is not None and existing.handler is not kind.handler:
            raise ConfigError(
                f"job kind {kind.name!r} is registered twice "
                f"({_where(existing.handler)} and {_where(kind.handler)})"
            )
        self._kinds[kind.name] = kind
        return kind

    def kind(
        self,
        name: str,
        *,
        timeout_s: float = JOB_TIMEOUT_S,
        max_attempts: int | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator: register the decorated ``async def handler(payload, ctx)`` as ``name``."""

        def register(handler: Handler) -> Handler:
            self.add(JobKind(name, handler, timeout_s=timeout_s, max_attempts=max_attempts))
            return handler

        return register

    def resource(self, name: str) -> Callable[[ResourceFactory], ResourceFactory]:
        """Decorator: register ``factory(settings)`` as the per-worker resource ``name``."""

        def register(factory: ResourceFactory) -> ResourceFactory:
            self._resources[name] = factory
            return factory

        return register

    def resource_factories(self) -> Mapping[str, ResourceFactory]:
        return dict(self._resources)

    def get(self, name: str) -> JobKind | None:
        return self._kinds.get(name)

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __len__(self) -> int:
        return len(self._kinds)

    def copy(self) -> KindRegistry:
        return KindRegistry(self._kinds.values(), self._resources)


def _where(handler: Handler) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', '?')}"


registry = KindRegistry()
"""The process-wide registry: the built-in kinds, plus whatever imported modules add."""


@registry.kind("canary", timeout_s=30)
async def canary(payload: Any, ctx: JobContext) -> dict[str, Any]:
    """Prove the queue drains end to end: the deploy gate enqueues it and checks the result."""
    return {"ok": True, "echo": payload, "worker": ctx.worker_id, "at": time.time()}


@registry.kind("noop", timeout_s=30)
async def noop(payload: Any, ctx: JobContext) -> None:
    """Do nothing (benchmarks)."""
    return None


@registry.kind("sleep", timeout_s=3600)
async def sleep(payload: Any, ctx: JobContext) -> dict[str, float]:
    """Sleep ``payload["seconds"]`` (drills, drain tests)."""
    seconds = payload.get("seconds") if isinstance(payload, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError('payload must be {"seconds": <non-negative number>}')
    await asyncio.sleep(float(seconds))
    return {"slept": float(seconds)}


CONNECTOR_EXECUTE = "connector.execute"
"""The kind of a connector execution; the execution id is the job id."""
CONNECTOR_RESOURCE = "connectors"
"""The resource holding the executor's HTTP session, definitions and credential source."""


@registry.kind(CONNECTOR_EXECUTE, timeout_s=JOB_TIMEOUT_S)
async def connector_execute(payload: Any, ctx: JobContext) -> Any:
    """Run one operation of a connector definition (:mod:`opsctl.connectors.jobs`)."""
    from opsctl.connectors.jobs import run_execution  # imports aiohttp: only when needed

    return await run_execution(payload, ctx)


@registry.resource(CONNECTOR_RESOURCE)
def _connector_resources(settings: Settings) -> AbstractAsyncContextManager[Any]:
    from opsctl.connectors.jobs import open_executor

    return open_executor(settings)


def import_kind_modules(modules: Iterable[str]) -> list[str]:
    """Import each module so it registers its kinds; a module that fails is a ConfigError."""
    loaded: list[str] = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                raise ConfigError(
                    f"job module {name!r} cannot be found",
                    hint="check the name and PYTHONPATH (--import / OPSCTL_JOB_MODULES)",
                ) from None
            raise ConfigError(f"job module {name!r} failed to import: {exc}") from None
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"job module {name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        loaded.append(name)
    return loaded
