"""Health routes: liveness, readiness and feature flags."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

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
from opsctl.verdict import CheckResult, iso_time, worst

routes = web.RouteTableDef()


def health_response(results: list[CheckResult], *, detailed: bool) -> web.Response:
    """200 on pass or warn, 503 on fail; details only for an operator."""
    status = worst(r.status for r in results)
    body: dict[str, Any] = {
        "status": status,
        "checks": {r.name: r.to_json(detailed=detailed) for r in results},
        "checkedAt": iso_time(max((r.checked_at for r in results), default=0.0)),
    }
    return web.json_response(
        body, status=503 if status == "fail" else 200, headers={"Cache-Control": "no-store"}
    )


@routes.get("/api/health/live")
async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "pass"}, headers={"Cache-Control": "no-store"})


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
