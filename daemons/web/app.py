"""The aiohttp application factory of the web daemon."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from daemons.web import connectors, executions, health, metrics, openapi, production, status
from daemons.web.keys import (
    HEARTBEAT_READS,
    KEYRING,
    KEYRING_ERROR,
    QUEUE,
    SECRETS,
    SETTINGS,
    STARTED_AT,
    STORE,
)
from daemons.web.middleware import request_context
from opsctl.queue import connect_queue
from opsctl.queue.heartbeat import HeartbeatWriter
from opsctl.secrets import create_provider, resolve_settings
from opsctl.settings import Settings, redact_url
from opsctl.store import connect, migrate

log = logging.getLogger("opsctl.web")

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings) -> web.Application:
    """The web daemon's app: opens the store (migrating it) and the queue on start-up.

    Start-up fails with an :class:`~opsctl.errors.OpsctlError` when the database or the
    configured Redis cannot be reached, so the process exits with one clear line. While it runs,
    the process keeps its own heartbeat (role ``web``).
    """
    app = web.Application(middlewares=[request_context], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[STARTED_AT] = time.time()
    app[HEARTBEAT_READS] = {}
    app.cleanup_ctx.append(_secrets_ctx)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_queue_ctx)
    app.cleanup_ctx.append(_keyring_ctx)
    app.cleanup_ctx.append(connectors.connectors_ctx)
    app.cleanup_ctx.append(executions.admission_ctx)
    app.add_routes(health.routes)
    app.add_routes(connectors.routes)
    app.add_routes(executions.routes)
    app.add_routes(production.routes)
    app.add_routes(metrics.routes)
    app.add_routes(status.routes)
    app.add_routes(openapi.routes)
    return app


async def _secrets_ctx(app: web.Application) -> AsyncIterator[None]:
    """The secret provider, and the settings with every secret reference resolved through it
    (an ``OPSCTL_API_TOKEN`` given as ``aws:…`` becomes the token the middleware compares)."""
    provider = create_provider(app[SETTINGS])
    try:
        app[SETTINGS] = await resolve_settings(app[SETTINGS], provider)
        app[SECRETS] = provider
        yield
    finally:
        await provider.close()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = await connect(app[SETTINGS])
    try:
        applied = await migrate(store)
        if applied:
            log.info("applied %d migration(s)", len(applied), extra={"database": store.location})
        app[STORE] = store
        yield
    finally:
        await store.close()


async def _queue_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    queue = await connect_queue(settings)
    try:
        if settings.queue_backend == "redis":
            log.info("connected to Redis", extra={"redis": redact_url(settings.queue_redis_url)})
        app[QUEUE] = queue
        async with HeartbeatWriter(queue, role="web"):
            yield
    finally:
        await queue.close()


async def _keyring_ctx(app: web.Application) -> AsyncIterator[None]:
    """The keyring of stored credentials (OAuth tokens). A web daemon without one still serves
    health and the registry; what needs it answers 503 with KEYRING_ERROR's reason."""
    from opsctl.crypto import MasterKeyError, open_keyring
    from opsctl.errors import OpsctlError

    try:
        keyring = await open_keyring(app[STORE], app[SETTINGS])
    except OpsctlError as exc:
        # A wrong master key is the operator's to fix; readiness (the keys check) fails on it.
        report = log.error if isinstance(exc, MasterKeyError) else log.warning
        report("stored credentials are unavailable: %s", exc)
        app[KEYRING_ERROR] = str(exc)
        yield
        return
    try:
        app[KEYRING] = keyring
        yield
    finally:
        await keyring.source.close()
