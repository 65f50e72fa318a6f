"""The OpenAPI 3.1 description of the web daemon, served at ``/api/openapi.json``.

Each route module adds its paths here; a test checks that every registered route is described.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

import opsctl
from daemons.web import connectors, executions, metrics, status
from opsctl.verdict import HEALTH_MEDIA_TYPE

routes = web.RouteTableDef()

_CHECK = {
    "type": "object",
    "description": "One reading of a check (draft-inadarei-api-health-check). Without the "
    "operator token only `status` and, on warn or fail, a generic `output`; with it the "
    "reason, the observed value and unit, the time of the reading and the check's details.",
    "required": ["status"],
    "properties": {
        "status": {"$ref": "#/components/schemas/Status"},
        "output": {"type": "string", "description": "why the check warns or fails"},
        "componentType": {"enum": ["component", "datastore", "system"]},
        "observedValue": {"description": "what the check measured (with the operator token)"},
        "observedUnit": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
    },
    # The draft: output in case of warn or fail, omitted on pass.
    "if": {"properties": {"status": {"const": "pass"}}},
    "then": {"not": {"required": ["output"]}},
    "else": {"required": ["output"]},
}

_HEALTH = {
    "type": "object",
    "required": ["status", "checks", "checkedAt"],
    "properties": {
        "status": {"$ref": "#/components/schemas/Status"},
        "version": {"type": "string", "description": "opsctl's version (with the operator token)"},
        "serviceId": {"type": "string"},
        "description": {"type": "string"},
        "output": {"type": "string", "description": "the checks that warn or fail"},
        "checks": {
            "type": "object",
            "description": "Each check by name: an array of its readings",
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/Check"},
            },
        },
        "checkedAt": {"type": "string", "format": "date-time"},
    },
    "if": {"properties": {"status": {"const": "pass"}}},
    "then": {"not": {"required": ["output"]}},
    "else": {"required": ["output"]},
}

_LIVE = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "pass"}},
}


_COUNT = {"type": ["integer", "null"]}
_HEARTBEAT = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {
            "type": "object",
            "required": ["status", "reasons", "checkedAt"],
            "properties": {
                "status": {"$ref": "#/components/schemas/Status"},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "checkedAt": {"type": "string", "format": "date-time"},
            },
        },
        "queue": {
            "type": "object",
            "properties": {
                "backend": {"enum": ["redis", "sqlite"]},
                "waiting": _COUNT,
                "delayed": _COUNT,
                "active": _COUNT,
                "failed": _COUNT,
                "oldestWaitingAgeSeconds": {"type": ["number", "null"]},
                "completedLastMinute": _COUNT,
                "delayedDue": {
                    **_COUNT,
                    "description": "delayed jobs whose run time has come (the promotion check)",
                },
                "oldestDueAgeSeconds": {
                    "type": ["number", "null"],
                    "description": "how far past its run time the most overdue delayed job is",
                },
            },
        },
        "workers": {
            "type": "object",
            "properties": {
                "alive": {"type": "integer"},
                "stale": {"type": "integer"},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string", "description": "host:pid"},
                            "live": {"type": "boolean"},
                            "lastSeenSecondsAgo": {"type": "number"},
                            "inFlight": {"type": "integer"},
                            "processed": {"type": "integer"},
                            "version": {"type": "string"},
                            "startedAt": {"type": "string", "format": "date-time"},
                        },
                    },
                },
            },
        },
        "rateLimits": {
            "type": "object",
            "description": "The shared vendor rate limiter's counters per connector",
            "properties": {
                "connectors": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {
                            "admitted": {"type": "integer"},
                            "delayed": {"type": "integer", "description": "admitted after a wait"},
                            "refused": {"type": "integer", "description": "told to come back"},
                            "throttled": {"type": "integer", "description": "vendor throttles"},
                            "paused": {"type": "integer", "description": "pauses set"},
                            "pausedForSeconds": {"type": "number"},
                        },
                    },
                }
            },
        },
    },
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _health_json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A health answer's response: the draft's media type."""
    return {"description": description, "content": {HEALTH_MEDIA_TYPE: {"schema": schema}}}


def _answering(ref: str, *statuses: str, inner: bool = False) -> dict[str, Any]:
    """The schema ``ref`` whose status (``.status.status`` when ``inner``) is one of these:
    200 answers pass or warn, 503 answers fail."""
    status: dict[str, Any] = {"enum": list(statuses)}
    if inner:
        status = {"type": "object", "properties": {"status": status}}
    return {"allOf": [{"$ref": ref}, {"properties": {"status": status}}]}


def _health_op(summary: str) -> dict[str, Any]:
    ref = "#/components/schemas/Health"
    return {
        "get": {
            "summary": summary,
            "security": [{}, {"bearer": []}],
            "responses": {
                "200": _health_json(
                    "pass or warn; details only with the operator token",
                    _answering(ref, "pass", "warn"),
                ),
                "503": _health_json("fail: at least one check failed", _answering(ref, "fail")),
            },
        }
    }


def build_spec() -> dict[str, Any]:
    heartbeat = "#/components/schemas/Heartbeat"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "opsctl web daemon",
            "version": opsctl.__version__,
            "description": "Health, status and operations API of the connector platform.",
        },
        "paths": {
            "/api/health/live": {
                "get": {
                    "summary": "Liveness: 200 while the event loop runs",
                    "responses": {"200": _health_json("alive", _LIVE)},
                }
            },
            "/api/health/ready": _health_op(
                "Readiness: connector definitions (registry), OAuth clients, database, queue"
            ),
            "/api/production/ready": _health_op(
                "Strict readiness: fails in production on the embedded SQLite database or queue"
            ),
            "/api/production/queue/heartbeat": {
                "get": {
                    "summary": "Queue heartbeat: backend reachable, workers alive, queue draining",
                    "description": 'Platforms and the deploy gate test `.status.status == "pass"`.'
                    " Without the operator token only `status` is returned.",
                    "security": [{}, {"bearer": []}],
                    "responses": {
                        "200": _health_json(
                            "pass or warn", _answering(heartbeat, "pass", "warn", inner=True)
                        ),
                        "503": _health_json("fail", _answering(heartbeat, "fail", inner=True)),
                    },
                }
            },
            "/api/health/features": {
                "get": {
                    "summary": "Feature flags and their effective values",
                    "responses": {
                        "200": _json(
                            "flags",
                            {
                                "type": "object",
                                "properties": {
                                    "environment": {"enum": ["development", "production"]},
                                    "features": {"type": "object"},
                                    "configured": {"type": "object"},
                                },
                            },
                        )
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
                }
            },
            **connectors.OPENAPI_PATHS,
            **executions.OPENAPI_PATHS,
            **metrics.OPENAPI_PATHS,
            **status.OPENAPI_PATHS,
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Status": {"enum": ["pass", "warn", "fail"]},
                "Check": _CHECK,
                "Health": _HEALTH,
                "Heartbeat": _HEARTBEAT,
                **connectors.OPENAPI_SCHEMAS,
                **executions.OPENAPI_SCHEMAS,
                **status.OPENAPI_SCHEMAS,
            },
        },
    }


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_spec())
