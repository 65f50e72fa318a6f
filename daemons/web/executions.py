"""Execution routes: ``POST /api/executions`` queues one, ``GET /api/executions/{id}`` reads it.

Both need the operator token. Refusals come from :class:`~opsctl.connectors.executions.Admission`
(the same ones ``opsctl run`` and the worker make): 404 for an unknown connector, operation or
connection, 403 for a connector that is not ``stable`` where only stable ones run, 422 for a
malformed request or input and config that break their schemas (every problem listed).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from daemons.web.connectors import CATALOG
from daemons.web.keys import QUEUE, SETTINGS, STORE
from daemons.web.middleware import json_error, require_operator
from opsctl.connectors.executions import (
    Admission,
    CatalogCache,
    ExecutionRefused,
    ExecutionRequest,
    enqueue_execution,
    execution_view,
)
from opsctl.connectors.registry import ConnectorRegistry
from opsctl.errors import QueueError, StoreError
from opsctl.queue.kinds import CONNECTOR_EXECUTE

ADMISSION = web.AppKey("execution_admission", Admission)
routes = web.RouteTableDef()

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


async def admission_ctx(app: web.Application) -> AsyncIterator[None]:
    """The definitions (loaded now, reloaded for an id they lack) and the registry's stages."""
    settings = app[SETTINGS]
    catalog = CatalogCache(settings)
    loaded = app.get(CATALOG)  # read by the connectors routes at start-up, just before
    if loaded is not None:
        catalog.seed(loaded.definitions)
    else:
        await catalog.reload()
    app[ADMISSION] = Admission(settings, catalog, registry=ConnectorRegistry(app[STORE]))
    yield


@routes.post("/api/executions")
async def create_execution(request: web.Request) -> web.Response:
    require_operator(request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json_error(400, "the body must be JSON: {connector, operation, input, connection}")
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        return json_error(400, f"{IDEMPOTENCY_HEADER} must be 1-200 visible ASCII characters")
    try:
        execution = ExecutionRequest.from_json(body)
        await request.app[ADMISSION].admit(execution)
        execution_id = await enqueue_execution(request.app[QUEUE], execution, idempotency_key=key)
    except ExecutionRefused as exc:
        return web.json_response(exc.to_json(), status=exc.http_status)
    except (StoreError, QueueError) as exc:
        return json_error(503, str(exc))
    location = f"/api/executions/{execution_id}"
    return web.json_response(
        {"id": execution_id, "status": "queued", "links": {"self": location}},
        status=202,
        headers={"Location": location},
    )


@routes.get("/api/executions/{id}")
async def show_execution(request: web.Request) -> web.Response:
    require_operator(request)
    execution_id = request.match_info["id"]
    try:
        info = await request.app[QUEUE].get(execution_id)
    except QueueError as exc:
        return json_error(503, str(exc))
    if info is None or info.kind != CONNECTOR_EXECUTE:
        return json_error(404, f"no execution {execution_id!r} (results are kept for a day)")
    return web.json_response(execution_view(info), headers={"Cache-Control": "no-store"})


# --- OpenAPI ---------------------------------------------------------------------------------


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/schemas/ExecutionError"}
_OBJECT = {"type": "object"}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "ExecutionRequest": {
        "type": "object",
        "required": ["connector", "operation"],
        "additionalProperties": False,
        "properties": {
            "connector": {"type": "string", "description": "connector id"},
            "operation": {"type": "string", "description": "operation id of that connector"},
            "input": {**_OBJECT, "description": "checked against the operation's input schema"},
            "connection": {
                "type": ["string", "null"],
                "description": "connection id (OAuth connectors; API-key ones may use the "
                "registered client)",
            },
            "config": {
                **_OBJECT,
                "description": "over the connection's config; checked against config_schema",
            },
        },
    },
    "ExecutionError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "reason": {
                "type": "string",
                "description": "unknown_connector, unknown_operation, unknown_connection, "
                "not_stable, invalid_request, missing_connection, invalid_input, "
                "invalid_config",
            },
            "hint": {"type": "string"},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    },
    "Execution": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["queued", "scheduled", "running", "succeeded", "failed"]},
            "connector": {"type": "string"},
            "operation": {"type": "string"},
            "connection": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "maxAttempts": {"type": "integer"},
            "error": {"type": ["string", "null"]},
            "lastError": {
                "type": ["string", "null"],
                "description": "why the latest failed run failed (it is being retried)",
            },
            "deferredReason": {
                "type": ["string", "null"],
                "description": "why the execution was rescheduled for later (a vendor's wait)",
            },
            "result": {
                "type": ["object", "null"],
                "properties": {
                    "status": {"enum": ["succeeded", "failed"]},
                    "records": {"type": "array"},
                    "recordCount": {"type": "integer"},
                    "pages": {"type": "integer"},
                    "truncated": {"type": "boolean"},
                    "httpStatus": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "timings": _OBJECT,
                },
            },
            "timings": _OBJECT,
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/executions": {
        "post": {
            "summary": "Queue an execution of a connector operation",
            "description": "In production, or with GENERIC_EXECUTOR_ENABLED=false, only stable "
            f"connectors run. An `{IDEMPOTENCY_HEADER}` header makes a retried request return "
            "the first one's id.",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/ExecutionRequest"}
                    }
                },
            },
            "responses": {
                "202": _json(
                    "queued; the id is the execution (and job) id",
                    {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "status": {"const": "queued"},
                            "links": _OBJECT,
                        },
                    },
                ),
                "400": _json("the body is not JSON", _ERROR),
                "401": _json("operator token required", _ERROR),
                "403": _json("the connector is not stable and only stable ones run here", _ERROR),
                "404": _json("unknown connector, operation or connection", _ERROR),
                "422": _json(
                    "malformed request, no connection for an OAuth connector, or input or "
                    "config breaking its schema",
                    _ERROR,
                ),
                "503": _json("the database or queue cannot be reached", _ERROR),
            },
        }
    },
    "/api/executions/{id}": {
        "get": {
            "summary": "An execution: status, attempts, result or error, timings",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": _json("the execution", {"$ref": "#/components/schemas/Execution"}),
                "401": _json("operator token required", _ERROR),
                "404": _json("no such execution", _ERROR),
            },
        }
    },
}
