"""The ``connector.execute`` job: one execution run by a worker, over objects the worker shares.

:func:`open_executor` is the worker's ``connectors`` resource (registered in
:mod:`opsctl.queue.kinds`): one HTTP session, the definitions, the registry and the credential
source for every execution the process runs. :func:`run_execution` is the kind's handler: it
admits the execution again (the connector may have been demoted since it was queued), runs it,
and returns the result to store, or raises :class:`~opsctl.queue.kinds.Reschedule` when the
vendor asked for a wait longer than a worker should hold a slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

import opsctl
from opsctl.connectors.credentials import CredentialSource
from opsctl.connectors.executions import (
    Admission,
    CatalogCache,
    ExecutionRefused,
    ExecutionRequest,
)
from opsctl.connectors.executor import ExecutionResult, Limiter, Timings, execute
from opsctl.connectors.model import Definition
from opsctl.connectors.registry import ConnectorRegistry
from opsctl.queue.kinds import CONNECTOR_RESOURCE, JobContext, Reschedule
from opsctl.settings import Settings
from opsctl.store import Store, connect, migrate

log = logging.getLogger("opsctl.connectors")

HTTP_CONNECTIONS = 100
"""Connections the worker's session keeps open at once, across vendors."""
USER_AGENT = f"opsctl/{opsctl.__version__}"


@dataclass
class Executor:
    """What every execution in one worker process shares."""

    settings: Settings
    session: aiohttp.ClientSession
    admission: Admission
    credentials: CredentialSource
    limiter: Limiter | None = None
    """The shared vendor rate limiter (issue 8); ``None`` admits every request."""

    async def run(self, payload: Any) -> dict[str, Any]:
        """Run one execution job's payload; its result as stored.

        Refusals (unknown connector, not stable here, bad input) are failed results, not
        errors: another try would be refused the same way.
        """
        try:
            request = ExecutionRequest.from_json(payload)
            admitted = await self.admission.admit(request)
        except ExecutionRefused as exc:
            return refused(exc).to_json()
        result = await execute(
            admitted.definition,
            request.operation,
            dict(request.input),
            credentials=self.credentials,
            connection_id=request.connection,
            config=admitted.config,
            session=self.session,
            limiter=self.limiter,
            allow_loopback_http=not self.settings.is_production,
        )
        if result.status == "rescheduled" and result.retry_at is not None:
            raise Reschedule(result.retry_at, result.error or "the vendor asked to wait")
        return result.to_json()


def refused(exc: ExecutionRefused) -> ExecutionResult:
    """A refusal as a failed execution result."""
    return ExecutionResult(
        "failed",
        [],
        0,
        None,
        Timings(0.0, 0.0, 0.0, 0, 0),
        error=str(exc),
        reason=exc.reason,
        problems=exc.problems,
    )


async def run_execution(payload: Any, ctx: JobContext) -> dict[str, Any]:
    """The ``connector.execute`` handler."""
    if ctx.resources is None:
        raise RuntimeError("connector.execute runs in a worker, which provides its resources")
    executor: Executor = await ctx.resources.get(CONNECTOR_RESOURCE)
    return await executor.run(payload)


@asynccontextmanager
async def open_executor(
    settings: Settings,
    *,
    credentials: CredentialSource | None = None,
    limiter: Limiter | None = None,
) -> AsyncIterator[Executor]:
    """The worker's executor: the store (migrated, for the registry and credentials), an HTTP
    session, the definitions and the credential source; closed in reverse order.

    ``credentials`` defaults to the stored connections and API clients
    (:class:`~opsctl.connectors.connections.StoredCredentials`), opened on first need so an
    execution without auth never touches the keyring. ``limiter`` defaults to the shared
    vendor rate limiter on the queue's backend (:mod:`opsctl.connectors.limiter`).
    """
    async with AsyncExitStack() as stack:
        store = await connect(settings)
        stack.push_async_callback(store.close)
        await migrate(store)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS, ttl_dns_cache=300),
                headers={"User-Agent": USER_AGENT},
            )
        )
        catalog = CatalogCache(settings)
        await catalog.reload()
        if catalog.problem:
            log.warning("connector definitions: %s", catalog.problem)
        registry = ConnectorRegistry(store)
        if limiter is None:
            from opsctl.connectors.limiter import open_limiter

            limiter = await stack.enter_async_context(open_limiter(settings))
        if credentials is None:
            stored = _StoredOnDemand(settings, store, session)
            stack.push_async_callback(stored.close)
            credentials = stored
        yield Executor(
            settings,
            session,
            Admission(settings, catalog, registry=registry),
            credentials,
            limiter,
        )


class _StoredOnDemand:
    """:class:`~opsctl.connectors.connections.StoredCredentials`, with its keyring, secret
    provider and Redis client opened at the first execution that needs credentials."""

    def __init__(self, settings: Settings, store: Store, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._store = store
        self._session = session
        self._stack = AsyncExitStack()
        self._source: CredentialSource | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> CredentialSource:
        async with self._lock:
            if self._source is None:
                self._source = await self._build()
            return self._source

    async def _build(self) -> CredentialSource:
        from opsctl.connectors.connections import StoredCredentials
        from opsctl.crypto import open_keyring
        from opsctl.secrets import create_provider

        settings = self._settings
        async with AsyncExitStack() as opening:  # closes what opened when a step fails
            provider = create_provider(settings)
            opening.push_async_callback(provider.close)
            keyring = await open_keyring(self._store, settings)
            opening.push_async_callback(keyring.source.close)
            redis = None
            if settings.queue_backend == "redis":
                from opsctl.connections import create_redis

                redis = create_redis(settings)
                opening.push_async_callback(redis.aclose)
            source = StoredCredentials(
                self._store,
                keyring,
                provider,
                redis=redis,
                redis_prefix=settings.redis_prefix,
                session=self._session,
            )
            opening.push_async_callback(source.close)
            self._stack.push_async_callback(opening.pop_all().aclose)
        return source

    async def credentials(
        self, connection_id: str | None, definition: Definition
    ) -> Mapping[str, str]:
        source = self._source or await self._open()
        return await source.credentials(connection_id, definition)

    async def refreshed(
        self, connection_id: str | None, definition: Definition, rejected: Mapping[str, str]
    ) -> Mapping[str, str]:
        source = self._source or await self._open()
        return await source.refreshed(connection_id, definition, rejected)

    async def close(self) -> None:
        await self._stack.aclose()
