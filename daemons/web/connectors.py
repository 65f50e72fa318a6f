"""Registry and OAuth routes: ``/api/connectors…`` and ``/api/oauth/{connector}/…``.

The registry reads and ``authorize`` need the operator token; ``callback`` is where the
vendor sends the user's browser back, so the single-use ``state`` is its guard. The flows
themselves live in :mod:`opsctl.connectors.authorization`; this module maps their errors to
HTTP statuses and renders the answers.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import aiohttp
from aiohttp import web

from daemons.web.keys import KEYRING, KEYRING_ERROR, SECRETS, SETTINGS, STORE
from daemons.web.middleware import json_error, require_operator
from opsctl.connectors.authorization import (
    AuthorizationRefused,
    AuthorizationStateError,
    OAuthFlows,
    callback_path,
)
from opsctl.connectors.clients import ClientNotRegistered
from opsctl.connectors.connections import StoredCredentials
from opsctl.connectors.loader import Catalog, load_definitions
from opsctl.connectors.model import Definition
from opsctl.connectors.oauth import InvalidGrant, OAuthError
from opsctl.connectors.oauth_state import state_store
from opsctl.connectors.overview import load_detail, load_views
from opsctl.connectors.registry import ConnectorRegistry, token_operator
from opsctl.errors import NotFound, OpsctlError, SecretError, UsageError
from opsctl.secrets import redact

log = logging.getLogger("opsctl.web")

CATALOG = web.AppKey("connector_catalog", Catalog)
OAUTH = web.AppKey("oauth_flows", OAuthFlows)
CREDENTIALS = web.AppKey("stored_credentials", StoredCredentials)

routes = web.RouteTableDef()


async def connectors_ctx(app: web.Application) -> AsyncIterator[None]:
    """The definitions (loaded once), and with a keyring the OAuth flows: a Redis client when
    configured (pending states and refresh locks), one HTTP session for token endpoints."""
    settings = app[SETTINGS]
    present = [p for p in settings.definitions_paths if p.exists()]
    app[CATALOG] = await asyncio.to_thread(
        load_definitions,
        present,
        allow_loopback_http=not settings.is_production,
        today=date.today(),
    )
    keyring = app.get(KEYRING)
    if keyring is None:
        yield
        return
    redis = None
    if settings.queue_redis_url:
        from opsctl.connections import create_redis

        redis = create_redis(settings)
    session = aiohttp.ClientSession()
    credentials = StoredCredentials(
        app[STORE],
        keyring,
        app[SECRETS],
        redis=redis,
        redis_prefix=settings.redis_prefix,
        session=session,
    )
    try:
        app[CREDENTIALS] = credentials
        app[OAUTH] = OAuthFlows(
            credentials, state_store(app[STORE], redis, settings.redis_prefix), session=session
        )
        yield
    finally:
        await credentials.close()
        await session.close()
        if redis is not None:
            await redis.aclose()


def _who(request: web.Request) -> str:
    token = request.app[SETTINGS].api_token
    return token_operator(token) if token else "unauthenticated (no OPSCTL_API_TOKEN)"


def _definition(request: web.Request, connector_id: str) -> Definition:
    definition = request.app[CATALOG].definitions.get(connector_id)
    if definition is None:
        raise web.HTTPNotFound(reason=f"unknown connector {connector_id!r}")
    return definition


def _flows(request: web.Request) -> OAuthFlows:
    flows = request.app.get(OAUTH)
    if flows is None:
        why = request.app.get(KEYRING_ERROR) or "the keyring is not open"
        raise web.HTTPServiceUnavailable(reason=f"OAuth is unavailable: {why}")
    return flows


def _status_of(exc: OpsctlError) -> int:
    if isinstance(exc, AuthorizationStateError | AuthorizationRefused | InvalidGrant):
        return 400
    if isinstance(exc, ClientNotRegistered):
        return 409
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, SecretError):
        return 503
    if isinstance(exc, OAuthError):
        return 502
    return 500


def _wants_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


def _page(title: str, body: str, status: int) -> web.Response:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def _problem(request: web.Request, exc: OpsctlError) -> web.Response:
    status = _status_of(exc)
    message = redact(str(exc))
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.path, message)
    if _wants_html(request):
        return _page("Authorisation failed", f"<p>{html.escape(message)}</p>", status)
    extra: dict[str, Any] = {}
    error = getattr(exc, "error", None)
    if error:
        extra["oauthError"] = error
    response = json_error(status, message, **extra)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the registry ------------------------------------------------------------------------


@routes.get("/api/connectors")
async def list_connectors(request: web.Request) -> web.Response:
    require_operator(request)
    registry = ConnectorRegistry(request.app[STORE])
    views = await load_views(request.app[CATALOG], registry)
    return web.json_response({"connectors": [v.to_json() for v in views]})


@routes.get("/api/connectors/{connector}")
async def show_connector(request: web.Request) -> web.Response:
    require_operator(request)
    connector_id = request.match_info["connector"]
    registry = ConnectorRegistry(request.app[STORE])
    detail = await load_detail(request.app[CATALOG], registry, connector_id)
    if detail is None:
        raise web.HTTPNotFound(reason=f"unknown connector {connector_id!r}")
    return web.json_response(detail.to_json())


# --- OAuth -------------------------------------------------------------------------------


def _config_param(request: web.Request) -> dict[str, Any]:
    raw = request.query.get("config")
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason="the config parameter is not JSON") from None
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(reason="the config parameter must be a JSON object")
    return value


@routes.get("/api/oauth/{connector}/authorize")
async def authorize(request: web.Request) -> web.Response:
    """302 to the vendor (or, for ``Accept: application/json``, the URL in a JSON body)."""
    require_operator(request)
    definition = _definition(request, request.match_info["connector"])
    if definition.auth.type != "oauth2":
        raise web.HTTPBadRequest(
            reason=f"connector {definition.id!r} uses {definition.auth.type} auth, not oauth2"
        )
    settings = request.app[SETTINGS]
    flows = _flows(request)
    try:
        start = await flows.begin(
            definition,
            redirect_uri=settings.app_url + callback_path(definition.id),
            who=_who(request),
            config=_config_param(request),
            account_label=request.query.get("account_label") or None,
        )
    except OpsctlError as exc:
        return _problem(request, exc)
    headers = {"Cache-Control": "no-store"}
    if request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response(
            {
                "authorizationUrl": start.url,
                "redirectUri": start.redirect_uri,
                "expiresAt": start.expires_at,
            },
            headers=headers,
        )
    return web.Response(status=302, headers={**headers, "Location": start.url})


@routes.get("/api/oauth/{connector}/callback")
async def callback(request: web.Request) -> web.Response:
    """The vendor's redirect: the state is taken once, the code exchanged, tokens stored."""
    definition = _definition(request, request.match_info["connector"])
    flows = _flows(request)
    query = request.query
    try:
        connection = await flows.complete(
            definition,
            state=query.get("state"),
            code=query.get("code"),
            error=query.get("error"),
            error_description=query.get("error_description"),
        )
    except OpsctlError as exc:
        return _problem(request, exc)
    log.info(
        "authorised connection %s of %s",
        connection.id,
        definition.id,
        extra={"connection_id": connection.id, "connector": definition.id},
    )
    body = {
        "status": "connected",
        "connector": definition.id,
        "connectionId": connection.id,
        "accountLabel": connection.account_label,
    }
    if _wants_html(request):
        return _page(
            f"{definition.display_name} connected",
            f"<p>Connection id: <code>{html.escape(connection.id)}</code></p>"
            "<p>You can close this window.</p>",
            200,
        )
    return web.json_response(body, headers={"Cache-Control": "no-store"})


# --- OpenAPI (merged into daemons/web/openapi.py) ---------------------------------------

_ERROR = {"$ref": "#/components/schemas/Error"}
_CONNECTOR_PARAM = {
    "name": "connector",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The connector id, e.g. github",
}


def _json_body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "what went wrong, for a person"},
            "oauthError": {"type": "string", "description": "the OAuth error code, if any"},
        },
    },
    "Connector": {
        "type": "object",
        "required": ["id", "stage", "stage_source", "drift", "client_registered"],
        "properties": {
            "id": {"type": "string"},
            "display_name": {"type": ["string", "null"]},
            "stage": {"enum": ["experimental", "beta", "stable", "deprecated", None]},
            "stage_source": {"enum": ["registry", "definition"]},
            "release_stage": {"type": ["string", "null"]},
            "version": {"type": ["string", "null"]},
            "digest": {"type": ["string", "null"]},
            "auth": {"type": ["string", "null"]},
            "valid": {"type": "boolean"},
            "file": {"type": ["string", "null"]},
            "promoted": {
                "type": ["object", "null"],
                "description": "the registry row: stage, digest and version when it was set",
            },
            "drift": {
                "type": "boolean",
                "description": "the definition changed since its stage was last set",
            },
            "client_registered": {"type": "boolean"},
            "client": {
                "type": ["object", "null"],
                "description": "kind, client id, secret reference and fingerprint; no value",
            },
            "client_required": {"type": "boolean"},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/connectors": {
        "get": {
            "summary": "Every connector: stage, version, drift, API client",
            "security": [{"bearer": []}],
            "responses": {
                "200": _json_body(
                    "the connectors",
                    {
                        "type": "object",
                        "properties": {
                            "connectors": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Connector"},
                            }
                        },
                    },
                ),
                "401": _json_body("operator token required", _ERROR),
            },
        }
    },
    "/api/connectors/{connector}": {
        "get": {
            "summary": "One connector, with its connections and audit trail",
            "security": [{"bearer": []}],
            "parameters": [_CONNECTOR_PARAM],
            "responses": {
                "200": _json_body(
                    "the connector",
                    {
                        "allOf": [{"$ref": "#/components/schemas/Connector"}],
                        "properties": {
                            "connections": {"type": "array", "items": {"type": "object"}},
                            "audit": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                ),
                "401": _json_body("operator token required", _ERROR),
                "404": _json_body("unknown connector", _ERROR),
            },
        }
    },
    "/api/oauth/{connector}/authorize": {
        "get": {
            "summary": "Start an OAuth authorisation: state and PKCE kept server-side",
            "description": "Redirects (302) to the vendor's authorization URL with the "
            "scopes, a single-use state (valid 10 minutes) and, when the definition asks for "
            "PKCE, an S256 code challenge. With `Accept: application/json` the URL is returned "
            "in the body instead.",
            "security": [{"bearer": []}],
            "parameters": [
                _CONNECTOR_PARAM,
                {
                    "name": "account_label",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "a name for the new connection",
                },
                {
                    "name": "config",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "the connection config as a JSON object (its config_schema)",
                },
            ],
            "responses": {
                "302": {"description": "to the vendor's authorization URL (Location)"},
                "200": _json_body(
                    "for Accept: application/json",
                    {
                        "type": "object",
                        "properties": {
                            "authorizationUrl": {"type": "string"},
                            "redirectUri": {"type": "string"},
                            "expiresAt": {"type": "number"},
                        },
                    },
                ),
                "400": _json_body("not an oauth2 connector, or a config it rejects", _ERROR),
                "401": _json_body("operator token required", _ERROR),
                "404": _json_body("unknown connector", _ERROR),
                "409": _json_body("no OAuth client registered for the connector", _ERROR),
                "503": _json_body("the client secret or the keyring is unavailable", _ERROR),
            },
        }
    },
    "/api/oauth/{connector}/callback": {
        "get": {
            "summary": "The vendor's redirect: code exchanged, tokens stored encrypted",
            "description": "Public (the user's browser arrives from the vendor): the state is "
            "the guard, honoured once. Answers JSON, or a small HTML page for a browser.",
            "parameters": [
                _CONNECTOR_PARAM,
                {"name": "state", "in": "query", "schema": {"type": "string"}},
                {"name": "code", "in": "query", "schema": {"type": "string"}},
                {"name": "error", "in": "query", "schema": {"type": "string"}},
                {"name": "error_description", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _json_body(
                    "connected",
                    {
                        "type": "object",
                        "properties": {
                            "status": {"const": "connected"},
                            "connector": {"type": "string"},
                            "connectionId": {"type": "string"},
                            "accountLabel": {"type": ["string", "null"]},
                        },
                    },
                ),
                "400": _json_body(
                    "missing, unknown, reused, expired or misdirected state; refused or "
                    "invalid code",
                    _ERROR,
                ),
                "404": _json_body("unknown connector", _ERROR),
                "502": _json_body("the vendor's token endpoint failed", _ERROR),
            },
        }
    },
}
