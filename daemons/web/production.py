"""Production routes: strict readiness and the queue heartbeat that platforms and the gate poll."""

from __future__ import annotations

import asyncio

from aiohttp import web

from daemons.web.health import health_json, health_response
from daemons.web.keys import HEARTBEAT_READS, QUEUE, SECRETS, SETTINGS, STORE
from daemons.web.middleware import has_operator_token
from opsctl.health import (
    check_database,
    check_keys,
    check_queue_backend,
    check_secrets,
    run_checks,
    snapshot_queue,
)
from opsctl.verdict import (
    CheckResult,
    QueueSnapshot,
    heartbeat_body,
    heartbeat_checks,
    production_requirements,
    worst,
)

routes = web.RouteTableDef()

async def _shared_snapshot(app: web.Application, *, detailed: bool) -> QueueSnapshot:
    """One queue read for every heartbeat request that arrives while it is under way.

    Platforms, the gate, dashboards and every machine's own health check poll this endpoint;
    requests that overlap share the read that is already in flight, so a burst of pollers
    costs one round of Redis calls, and no answer is older than the read it waited for.
    """
    reads = app[HEARTBEAT_READS]
    pending = reads.get(detailed)
    if pending is None:
        # The limiter's counters are details: anonymous polls (platforms, guards) skip them.
        read = snapshot_queue(app.get(QUEUE), app[SETTINGS], rate_limits=detailed)
        pending = reads[detailed] = asyncio.ensure_future(read)
        pending.add_done_callback(lambda _: reads.pop(detailed, None))
    return await asyncio.shield(pending)

PRODUCTION_DESCRIPTION = (
    "production readiness of the opsctl web daemon: database, queue, secrets, keys"
)


@routes.get("/api/production/queue/heartbeat")
async def queue_heartbeat(request: web.Request) -> web.Response:
    """``.status.status`` is pass, warn or fail; 503 on fail (docs/operations/monitoring.md)."""
    settings = request.app[SETTINGS]
    detailed = has_operator_token(request)
    snapshot = await _shared_snapshot(request.app, detailed=detailed)
    results = heartbeat_checks(snapshot, settings)
    body = heartbeat_body(snapshot, results, detailed=detailed)
    status = 503 if worst(r.status for r in results) == "fail" else 200
    return health_json(body, status=status)


@routes.get("/api/production/ready")
async def production_ready(request: web.Request) -> web.Response:
    """Readiness for production traffic: PostgreSQL and Redis (not the embedded defaults), the
    secret provider, and the encryption keys."""
    app = request.app
    settings = app[SETTINGS]
    store, queue, secrets = app.get(STORE), app.get(QUEUE), app.get(SECRETS)
    results: list[CheckResult] = await run_checks(
        [
            lambda: check_database(store),
            lambda: check_queue_backend(settings, queue),
            lambda: check_secrets(secrets),
            lambda: check_keys(settings, store),
        ]
    )
    results = production_requirements(settings, results)
    return health_response(
        results, detailed=has_operator_token(request), description=PRODUCTION_DESCRIPTION
    )
