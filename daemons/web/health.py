"""Health routes: liveness, readiness and feature flags."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

import opsctl
from daemons.web.connectors import CATALOG
from daemons.web.keys import QUEUE, SECRETS, SETTINGS, STORE
from daemons.web.middleware import has_operator_token
from opsctl.health import (
    check_database,
    check_oauth,
    check_queue_backend,
    check_registry,
    run_checks,
)
from opsctl.verdict import HEALTH_MEDIA_TYPE, CheckResult, health_body, worst

routes = web.RouteTableDef()

READY_DESCRIPTION = "readiness of the opsctl web daemon: definitions, OAuth, database, queue"


def health_json(body: dict[str, Any], *, status: int = 200) -> web.Response:
    """A health answer: ``application/health+json``, never cached (200, or 503 on fail)."""
    return web.json_response(
        body,
        status=status,
        content_type=HEALTH_MEDIA_TYPE,
        headers={"Cache-Control": "no-store"},
    )


def health_response(
    results: list[CheckResult], *, detailed: bool, description: str = READY_DESCRIPTION
) -> web.Response:
    """200 on pass or warn, 503 on fail; details only for an operator."""
    body = health_body(
        results, detailed=detailed, description=description, version=opsctl.__version__
    )
    return health_json(body, status=503 if worst(r.status for r in results) == "fail" else 200)


@routes.get("/api/health/live")
async def live(request: web.Request) -> web.Response:
    return health_json({"status": "pass"})


@routes.get("/api/health/ready")
async def ready(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    store = app.get(STORE)
    queue = app.get(QUEUE)
    provider = app.get(SECRETS)
    catalog = app.get(CATALOG)  # the definitions this daemon serves, loaded at start-up
    results = await run_checks(
        [
            lambda: asyncio.to_thread(check_registry, settings),
            lambda: check_oauth(settings, store, provider, catalog=catalog),
            lambda: check_database(store),
            lambda: check_queue_backend(settings, queue),
        ]
    )
    return health_response(results, detailed=has_operator_token(request))


@routes.get("/api/health/features")
async def features(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return web.json_response(
        {
            "environment": settings.env,
            "features": {"GENERIC_EXECUTOR_ENABLED": settings.generic_executor_active},
            "configured": {"GENERIC_EXECUTOR_ENABLED": settings.generic_executor_enabled},
        }
    )
