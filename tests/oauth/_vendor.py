"""A local vendor on port 0 that behaves like a real OAuth provider and API.

``/oauth/authorize`` checks the client and redirect URI and redirects back with a code;
``/oauth/token`` takes the client secret (basic or post), verifies PKCE, and answers the
``authorization_code`` and ``refresh_token`` grants with ``invalid_grant`` for a bad, used or
revoked grant; ``/api/me`` answers 401 to an unknown or expired access token;
``/api/key-check`` wants the API key in ``X-Api-Key``. It counts every refresh.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

CLIENT_ID = "client-123"
CLIENT_SECRET = "vendor-client-secret-0123456789"
API_KEY = "vendor-api-key-abcdef0123456789"


@dataclass
class Grant:
    redirect_uri: str
    scope: str
    challenge: str | None
    used: bool = False


@dataclass
class Vendor:
    url: str = ""
    expires_in: int = 3600
    refresh_delay_s: float = 0.0
    rotate_refresh_tokens: bool = True
    codes: dict[str, Grant] = field(default_factory=dict)
    access: dict[str, float] = field(default_factory=dict)
    refresh: set[str] = field(default_factory=set)
    refresh_calls: int = 0
    code_calls: int = 0
    authorize_calls: list[dict[str, str]] = field(default_factory=list)

    # --- helpers for tests -------------------------------------------------------------

    def issue(self, *, expires_in: int | None = None) -> dict[str, Any]:
        """A token pair as the token endpoint would grant it."""
        access = "at-" + secrets.token_hex(8)
        refresh = "rt-" + secrets.token_hex(8)
        lifetime = self.expires_in if expires_in is None else expires_in
        self.access[access] = time.time() + lifetime
        self.refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": "me:read",
        }

    def revoke_all(self) -> None:
        self.refresh.clear()
        self.access.clear()

    # --- endpoints ---------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        self.authorize_calls.append(dict(q))
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return web.json_response({"error": "invalid_request"}, status=400)
        redirect = q["redirect_uri"]
        if q.get("deny"):
            target = f"{redirect}?{urlencode({'error': 'access_denied', 'state': q['state']})}"
            raise web.HTTPFound(target)
        code = "code-" + secrets.token_hex(8)
        challenge = q.get("code_challenge")
        if challenge is not None and q.get("code_challenge_method") != "S256":
            return web.json_response({"error": "invalid_request"}, status=400)
        self.codes[code] = Grant(redirect, q.get("scope", ""), challenge)
        raise web.HTTPFound(f"{redirect}?{urlencode({'code': code, 'state': q['state']})}")

    def _client_ok(self, request: web.Request, form: dict[str, str]) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return (user, password) == (CLIENT_ID, CLIENT_SECRET)
        return (form.get("client_id"), form.get("client_secret")) == (CLIENT_ID, CLIENT_SECRET)

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        if not self._client_ok(request, {k: str(v) for k, v in form.items()}):
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            self.code_calls += 1
            code = self.codes.get(str(form.get("code")))
            if code is None or code.used or code.redirect_uri != form.get("redirect_uri"):
                return web.json_response({"error": "invalid_grant"}, status=400)
            code.used = True
            if code.challenge is not None:
                verifier = str(form.get("code_verifier", ""))
                digest = hashlib.sha256(verifier.encode()).digest()
                computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if computed != code.challenge:
                    return web.json_response(
                        {"error": "invalid_grant", "error_description": "PKCE failed"}, status=400
                    )
            return web.json_response(self.issue())
        if grant == "refresh_token":
            self.refresh_calls += 1
            if self.refresh_delay_s:
                await asyncio.sleep(self.refresh_delay_s)
            token = str(form.get("refresh_token"))
            if token not in self.refresh:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "revoked"}, status=400
                )
            body = self.issue()
            if self.rotate_refresh_tokens:
                self.refresh.discard(token)
            else:
                self.refresh.discard(body["refresh_token"])
                body["refresh_token"] = token
            return web.json_response(body)
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    async def me(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        expires = self.access.get(token)
        if expires is None or expires < time.time():
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response({"id": 42, "login": "octo"})

    async def key_check(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != API_KEY:
            return web.json_response({"message": "invalid key"}, status=401)
        return web.json_response({"ok": True})


@asynccontextmanager
async def running_vendor() -> AsyncIterator[Vendor]:
    vendor = Vendor()
    app = web.Application()
    app.router.add_get("/oauth/authorize", vendor.authorize)
    app.router.add_post("/oauth/token", vendor.token)
    app.router.add_get("/api/me", vendor.me)
    app.router.add_get("/api/key-check", vendor.key_check)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    vendor.url = f"http://{host}:{port}"
    try:
        yield vendor
    finally:
        await runner.cleanup()


def _policy() -> dict[str, Any]:
    return {
        "id": "per_minute",
        "kind": "fixed_window",
        "limit": 100000,
        "window": "PT1M",
        "scope": ["credential"],
        "source": {"url": "https://vendor.example/limits", "as_of": "2024-01-01"},
    }


def oauth_definition(vendor_url: str, **changes: Any) -> dict[str, Any]:
    """An oauth2 connector ``vendorco`` against the local vendor (PKCE, refreshing)."""
    doc: dict[str, Any] = {
        "schema_version": "1",
        "id": "vendorco",
        "version": "1.0.0",
        "display_name": "Vendor Co",
        "release_stage": "beta",
        "base_url": vendor_url,
        "auth": {
            "type": "oauth2",
            "authorization_url": f"{vendor_url}/oauth/authorize",
            "token_url": f"{vendor_url}/oauth/token",
            "scopes": ["me:read", "me:write"],
            "pkce": True,
            "refresh": {"enabled": True, "margin_s": 60},
        },
        "rate_limits": {"policies": [_policy()]},
        "retry": {"max_attempts": 2, "initial_delay_s": 0.01, "max_delay_s": 0.05},
        "operations": [{"id": "get_me", "method": "GET", "path": "/api/me"}],
        "check": "get_me",
    }
    doc.update(changes)
    return doc


def key_definition(vendor_url: str, **changes: Any) -> dict[str, Any]:
    """An api_key connector ``keyco`` against the local vendor."""
    doc: dict[str, Any] = {
        "schema_version": "1",
        "id": "keyco",
        "version": "1.0.0",
        "display_name": "Key Co",
        "release_stage": "beta",
        "base_url": vendor_url,
        "auth": {"type": "api_key", "name": "X-Api-Key"},
        "rate_limits": {"policies": [_policy()]},
        "retry": {"max_attempts": 2, "initial_delay_s": 0.01, "max_delay_s": 0.05},
        "operations": [{"id": "key_check", "method": "GET", "path": "/api/key-check"}],
        "check": "key_check",
    }
    doc.update(changes)
    return doc


def write_definitions(folder: Path, *documents: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for doc in documents:
        (folder / f"{doc['id']}.json").write_text(json.dumps(doc, indent=2))
    return folder
