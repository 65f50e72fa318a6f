"""Request ids, access logs, JSON errors, and the operator-token test."""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from daemons.web.keys import SETTINGS
from opsctl.logs import log_context

log = logging.getLogger("opsctl.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (the caller's when sane), log it, answer errors in JSON."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    token = log_context.set({"request_id": request_id})
    started = time.perf_counter()
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = json_error(exc.status, exc.reason)
            for name in ("WWW-Authenticate", "Allow", "Retry-After", "Location"):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = json_error(500, "internal error", requestId=request_id)
        response.headers[REQUEST_ID_HEADER] = request_id
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status,
            extra={
                "status": response.status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response
    finally:
        log_context.reset(token)


def has_operator_token(request: web.Request) -> bool:
    """True when the request carries ``Authorization: Bearer <OPSCTL_API_TOKEN>``."""
    expected = request.app[SETTINGS].api_token
    if not expected:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    # aiohttp keeps the bytes of a header that is not UTF-8 as surrogates: compare those bytes
    # (a plain encode() would raise, and a hostile header would answer 500).
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected.encode())


def require_operator(request: web.Request) -> None:
    """Refuse (401) a request to an operator endpoint without the bearer token.

    Operator endpoints need the token whenever one is configured, which production enforces;
    a development stack without ``OPSCTL_API_TOKEN`` leaves them open on its local address.
    """
    if request.app[SETTINGS].api_token is None:
        return
    if not has_operator_token(request):
        raise web.HTTPUnauthorized(
            reason="operator token required: send Authorization: Bearer $OPSCTL_API_TOKEN",
            headers={"WWW-Authenticate": "Bearer"},
        )
