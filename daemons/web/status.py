"""Status routes: ``GET /api/status/rate-limits``, the vendor limits derived for a topology.

The answer is the JSON of ``opsctl rate-limits --json`` for the same values (docs/connectors.md).
It needs the operator token in production only, as docs/connectors.md says; a development stack
answers anonymous requests even when a token is configured.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from aiohttp import web

from daemons.web.connectors import CATALOG
from daemons.web.keys import SETTINGS
from daemons.web.middleware import json_error, require_operator
from opsctl.connectors.loader import load_definitions
from opsctl.connectors.model import Definition
from opsctl.connectors.ratelimits import (
    DerivationError,
    InvalidParameter,
    derive_limits,
    parse_topology,
)

routes = web.RouteTableDef()

RATE_LIMIT_PARAMETERS = ("workers", "concurrency", "proxy", "proxy_replicas", "connector", "plan")


async def _definitions(app: web.Application) -> dict[str, Definition]:
    catalog = app.get(CATALOG)
    if catalog is None:
        settings = app[SETTINGS]
        catalog = await asyncio.to_thread(
            load_definitions,
            [p for p in settings.definitions_paths if p.exists()],
            allow_loopback_http=not settings.is_production,
            today=date.today(),
        )
    return dict(catalog.definitions)


@routes.get("/api/status/rate-limits")
async def rate_limits(request: web.Request) -> web.Response:
    if request.app[SETTINGS].is_production:
        require_operator(request)
    query = request.query
    unknown = sorted(set(query) - set(RATE_LIMIT_PARAMETERS))
    if unknown:
        return json_error(
            400,
            f"unknown query parameter {unknown[0]!r} (known: {', '.join(RATE_LIMIT_PARAMETERS)})",
            parameter=unknown[0],
        )
    try:
        topology = parse_topology(
            workers=query.get("workers"),
            concurrency=query.get("concurrency"),
            proxy=query.get("proxy"),
            proxy_replicas=query.get("proxy_replicas"),
        )
        report = derive_limits(
            await _definitions(request.app),
            topology,
            connector=query.get("connector"),
            plan=query.get("plan"),
        )
    except InvalidParameter as exc:
        return json_error(400, exc.message, parameter=exc.parameter)
    except DerivationError as exc:
        return json_error(500, exc.message)
    return web.json_response(report.to_json(), headers={"Cache-Control": "no-store"})


# --- OpenAPI (merged into daemons/web/openapi.py) ---------------------------------------

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_INTEGER_OR_NULL = {"type": ["integer", "null"]}
_WARNING = {
    "type": "object",
    "required": ["code", "layer", "message"],
    "properties": {
        "code": {"type": "string"},
        "layer": {"enum": ["fleet", "process", "proxy"]},
        "message": {"type": "string"},
    },
}
_FIGURES = {
    "type": "object",
    "properties": {
        "rate_per_s": _NUMBER_OR_NULL,
        "burst": _INTEGER_OR_NULL,
        "concurrency": _INTEGER_OR_NULL,
    },
}
_POLICY = {
    "type": "object",
    "required": ["connector", "policy", "kind", "scope", "vendor_limit", "source", "fleet"],
    "properties": {
        "connector": {"type": "string"},
        "policy": {"type": "string"},
        "kind": {"enum": ["fixed_window", "sliding_window", "token_bucket", "concurrency"]},
        "scope": {"type": "array", "items": {"type": "string"}},
        "vendor_limit": {"type": "string", "description": "the vendor's figure, in words"},
        "unit": {"enum": ["requests", "points"]},
        "cost": {"type": "number", "description": "cost of the costliest covered request"},
        "limit": _INTEGER_OR_NULL,
        "window": {"type": ["string", "null"], "description": "ISO-8601 duration"},
        "window_s": _NUMBER_OR_NULL,
        "capacity": _NUMBER_OR_NULL,
        "refill_per_s": _NUMBER_OR_NULL,
        "max_in_flight": _INTEGER_OR_NULL,
        "requests_per_window": _INTEGER_OR_NULL,
        "source": {
            "type": "object",
            "properties": {
                "url": {"type": "string"},
                "as_of": {"type": "string", "format": "date"},
                "note": {"type": ["string", "null"]},
            },
        },
        "fleet": {**_FIGURES, "description": "all workers together, per scope value"},
        "per_process": {**_FIGURES, "description": "one worker's share without a shared limiter"},
        "costs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "operation": {"type": "string"},
                    "cost": {"type": "number"},
                    "requests": _INTEGER_OR_NULL,
                },
            },
        },
        "proxy": {
            "type": ["object", "null"],
            "properties": {
                "kind": {"enum": ["nginx", "envoy"]},
                "name": {"type": "string"},
                "key": {"type": ["string", "null"]},
                "declare": {"type": "array", "items": {"type": "string"}},
                "apply": {"type": "array", "items": {"type": "string"}},
            },
        },
        "warnings": {"type": "array", "items": _WARNING},
    },
}
_REPORT = {
    "type": "object",
    "required": ["topology", "factors", "connectors", "proxy"],
    "properties": {
        "topology": {
            "type": "object",
            "properties": {
                "workers": {"type": "integer"},
                "concurrency": {"type": "integer"},
                "slots": {"type": "integer"},
                "proxy": {"enum": ["nginx", "envoy"]},
                "proxy_replicas": {"type": "integer"},
            },
        },
        "factors": {
            "type": "object",
            "properties": {"safety": {"type": "number"}, "burst_share": {"type": "number"}},
        },
        "connectors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "display_name": {"type": "string"},
                    "base_url": {"type": "string"},
                    "plan": {"type": ["string", "null"]},
                    "plans": {"type": "array", "items": {"type": "string"}},
                    "policies": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/DerivedRateLimit"},
                    },
                },
            },
        },
        "proxy": {
            "type": "object",
            "properties": {
                "kind": {"enum": ["nginx", "envoy"]},
                "replicas": {"type": "integer"},
                "config": {"type": "string", "description": "the configuration block to paste"},
            },
        },
    },
}


def _parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_COUNT = {"type": "integer", "minimum": 1}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/status/rate-limits": {
        "get": {
            "summary": "Vendor rate limits derived for a topology, with reverse-proxy lines",
            "description": "Per connector and policy: the vendor's limit and source, the safe "
            "fleet rate and burst (f = 0.8, b = 0.2), each worker's share without a shared "
            "limiter, warnings, and the proxy configuration. The same JSON as "
            "`opsctl rate-limits --json`. The operator token is required in production only.",
            "security": [{}, {"bearer": []}],
            "parameters": [
                _parameter("workers", "worker processes (default: the topology's)", _COUNT),
                _parameter("concurrency", "concurrent jobs per worker (default 10)", _COUNT),
                _parameter(
                    "proxy", "proxy to configure (default nginx)", {"enum": ["nginx", "envoy"]}
                ),
                _parameter("proxy_replicas", "proxy replicas (default 1)", _COUNT),
                _parameter("connector", "only this connector", {"type": "string"}),
                _parameter("plan", "a vendor plan's figures", {"type": "string"}),
            ],
            "responses": {
                "200": _json("the derived limits", {"$ref": "#/components/schemas/RateLimits"}),
                "400": _json("a bad query value; `parameter` names it", _ERROR),
                "401": _json("operator token required (production)", _ERROR),
                "500": _json("a definition's figures cannot be derived", _ERROR),
            },
        }
    }
}
OPENAPI_SCHEMAS: dict[str, Any] = {"RateLimits": _REPORT, "DerivedRateLimit": _POLICY}
