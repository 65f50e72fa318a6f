"""OAuth 2.0 authorization-code protocol (RFC 6749, PKCE RFC 7636) with authlib over aiohttp.

authlib builds the authorization URL, the token request bodies, the PKCE challenge and the
client authentication (``client_secret_basic`` or ``client_secret_post``); aiohttp's client
sends them. The flows that use these (state, connections, refresh) live in
:mod:`opsctl.connectors.authorization` and :mod:`opsctl.connectors.connections`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from opsctl.connectors.model import Definition, OAuth2Auth
from opsctl.connectors.templates import TemplateError, render
from opsctl.errors import OpsctlError, UsageError
from opsctl.secrets import redaction

TOKEN_TIMEOUT_S = 15.0
"""A token endpoint that takes longer than this is treated as down (below the lock TTL)."""
STATE_BYTES = 32
VERIFIER_LENGTH = 64  # RFC 7636: 43-128 characters of [A-Za-z0-9-._~]


class OAuthError(OpsctlError):
    """The vendor's authorization or token endpoint failed or answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        status: int | None = None,
        hint: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.error = error
        self.status = status


class InvalidGrant(OAuthError):
    """The vendor refused the grant (code or refresh token): expired, revoked or reused."""


def oauth2_auth(definition: Definition) -> OAuth2Auth:
    """The definition's OAuth settings; :class:`UsageError` for another auth type."""
    if not isinstance(definition.auth, OAuth2Auth):
        raise UsageError(
            f"connector {definition.id!r} uses {definition.auth.type} auth, not oauth2"
        )
    return definition.auth


def _render_url(url: str, config: Mapping[str, Any], what: str, connector_id: str) -> str:
    try:
        return render(url, {"config": config})
    except TemplateError as exc:
        raise UsageError(
            f"the {what} of connector {connector_id!r} needs the connection's config: {exc}",
            hint="pass the config when authorising (config={...})",
        ) from None


def token_url(definition: Definition, config: Mapping[str, Any]) -> str:
    return _render_url(oauth2_auth(definition).token_url, config, "token_url", definition.id)


def new_state() -> str:
    return str(generate_token(STATE_BYTES))


def new_code_verifier() -> str:
    return str(generate_token(VERIFIER_LENGTH))


def authorization_url(
    definition: Definition,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_verifier: str | None,
    config: Mapping[str, Any],
) -> str:
    """Where to send the user: the vendor's authorization URL with the request parameters."""
    auth = oauth2_auth(definition)
    base = _render_url(auth.authorization_url, config, "authorization_url", definition.id)
    extra: dict[str, str] = dict(auth.authorize_params)
    if code_verifier is not None:
        extra["code_challenge"] = create_s256_code_challenge(code_verifier)
        extra["code_challenge_method"] = "S256"
    scope = auth.scope_separator.join(auth.scopes) if auth.scopes else None
    url: str = prepare_grant_uri(
        base, client_id, "code", redirect_uri=redirect_uri, scope=scope, state=state, **extra
    )
    return url


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint granted; ``expires_at`` is epoch seconds (``None``: no expiry)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"
    scope: str | None = None
    expires_at: float | None = None
    obtained_at: float = 0.0

    def expiring(self, now: float, margin_s: float) -> bool:
        """True when the access token expires within ``margin_s`` (or has expired)."""
        return self.expires_at is not None and now >= self.expires_at - margin_s

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "scope": self.scope,
            "expires_at": self.expires_at,
            "obtained_at": self.obtained_at,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> TokenSet:
        data = json.loads(text)
        token = cls(
            access_token=str(data["access_token"]),
            refresh_token=data.get("refresh_token"),
            token_type=data.get("token_type") or "Bearer",
            scope=data.get("scope"),
            expires_at=data.get("expires_at"),
            obtained_at=float(data.get("obtained_at") or 0.0),
        )
        token.register_secrets()
        return token

    def register_secrets(self) -> None:
        """Keep both tokens out of every log line from now on."""
        redaction.register(self.access_token)
        if self.refresh_token:
            redaction.register(self.refresh_token)

    @classmethod
    def from_response(
        cls, body: Mapping[str, Any], *, now: float, previous: TokenSet | None = None
    ) -> TokenSet:
        """A token endpoint's answer; a refresh that returns no refresh token keeps the old."""
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthError("the token endpoint answered without an access_token")
        expires_at: float | None = None
        expires_in = body.get("expires_in")
        if isinstance(expires_in, int | float | str) and str(expires_in).strip():
            try:
                expires_at = now + float(expires_in)
            except ValueError:
                expires_at = None
        if expires_at is None and isinstance(body.get("expires_at"), int | float):
            expires_at = float(body["expires_at"])
        refresh = body.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            refresh = previous.refresh_token if previous else None
        scope = body.get("scope")
        token = cls(
            access_token=access,
            refresh_token=refresh,
            token_type=str(body.get("token_type") or "Bearer"),
            scope=" ".join(scope) if isinstance(scope, list) else (scope or None),
            expires_at=expires_at,
            obtained_at=now,
        )
        token.register_secrets()
        return token


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str = field(repr=False)


async def _token_request(
    session: aiohttp.ClientSession,
    definition: Definition,
    url: str,
    client: ClientCredentials,
    body: str,
) -> dict[str, Any]:
    """POST a form to the token endpoint; the JSON (or form) answer, or an OAuthError."""
    auth = oauth2_auth(definition)
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    _, headers, body = ClientAuth(client.client_id, client.client_secret, auth.client_auth).prepare(
        "POST", url, headers, body
    )
    try:
        async with session.post(
            url,
            data=body.encode(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=TOKEN_TIMEOUT_S),
            allow_redirects=False,
        ) as response:
            status = response.status
            text = await response.text()
            content_type = response.content_type
    except TimeoutError:
        raise OAuthError(
            f"the token endpoint of {definition.id} did not answer within {TOKEN_TIMEOUT_S:.0f} s"
        ) from None
    except aiohttp.ClientError as exc:
        raise OAuthError(
            f"cannot reach the token endpoint of {definition.id}: {type(exc).__name__}: {exc}"
        ) from None
    data = _parse_body(text, content_type)
    error = data.get("error") if isinstance(data.get("error"), str) else None
    if status >= 400 or error or data.get("ok") is False:
        error = error or f"http_{status}"
        description = data.get("error_description")
        detail = f": {description}" if isinstance(description, str) and description else ""
        cls = InvalidGrant if error == "invalid_grant" else OAuthError
        raise cls(
            f"the token endpoint of {definition.id} answered {status} {error}{detail}",
            error=error,
            status=status,
        )
    return data


def _parse_body(text: str, content_type: str) -> dict[str, Any]:
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return dict(parse_qsl(text))  # GitHub answers a form unless asked for JSON


async def exchange_code(
    session: aiohttp.ClientSession,
    definition: Definition,
    client: ClientCredentials,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    config: Mapping[str, Any],
    clock: Callable[[], float] = time.time,
) -> TokenSet:
    """Trade an authorization code for tokens (``InvalidGrant`` for a bad or used code)."""
    params: dict[str, str] = dict(oauth2_auth(definition).token_params)
    if code_verifier is not None:
        params["code_verifier"] = code_verifier
    body = prepare_token_request(
        "authorization_code", code=code, redirect_uri=redirect_uri, **params
    )
    data = await _token_request(session, definition, token_url(definition, config), client, body)
    return TokenSet.from_response(data, now=clock())


async def refresh_tokens(
    session: aiohttp.ClientSession,
    definition: Definition,
    client: ClientCredentials,
    token: TokenSet,
    *,
    config: Mapping[str, Any],
    clock: Callable[[], float] = time.time,
) -> TokenSet:
    """Trade the refresh token for a new access token (``InvalidGrant`` when refused)."""
    if not token.refresh_token:
        raise InvalidGrant(f"the token of {definition.id} has no refresh token", error="no_refresh")
    params: dict[str, str] = dict(oauth2_auth(definition).token_params)
    body = prepare_token_request("refresh_token", refresh_token=token.refresh_token, **params)
    data = await _token_request(session, definition, token_url(definition, config), client, body)
    return TokenSet.from_response(data, now=clock(), previous=token)
