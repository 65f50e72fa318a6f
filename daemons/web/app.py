"""The aiohttp application factory of the web daemon."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from daemons.web import health, openapi
from daemons.web.keys import REDIS, SETTINGS, STARTED_AT, STORE
from daemons.web.middleware import request_context
from opsctl.connections import create_redis, verify_redis
from opsctl.settings import Settings, redact_url
from opsctl.store import connect, migrate

log = logging.getLogger("opsctl.web")

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings) -> web.Application:
    """The web daemon's app: opens the store (migrating it) and Redis on start-up, closes on exit.

    Start-up fails with an :class:`~opsctl.errors.OpsctlError` when the database or the
    configured Redis cannot be reached, so the process exits with one clear line.
    """
    app = web.Application(middlewares=[request_context], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[STARTED_AT] = time.time()
    app.cleanup_ctx.append(_store_ctx)
    if settings.queue_redis_url:
        app.cleanup_ctx.append(_redis_ctx)
    app.add_routes(health.routes)
    app.add_routes(openapi.routes)
    return app


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


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = create_redis(settings)
    try:
        await verify_redis(client, settings.queue_redis_url or "")
        log.info("connected to Redis", extra={"redis": redact_url(settings.queue_redis_url)})
        app[REDIS] = client
        yield
    finally:
        await client.aclose()
