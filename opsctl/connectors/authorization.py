"""The OAuth authorization-code flow of a connection: begin (state, PKCE) and complete.

``begin`` keeps a pending authorisation server-side under a fresh ``state`` (with the PKCE
verifier when the definition asks for PKCE) and returns the vendor URL to send the user to.
``complete`` takes that state exactly once, exchanges the code at the token endpoint with the
client secret resolved from the provider, and stores the tokens encrypted under a new
connection. A missing, unknown (forged or already used), expired or misdirected state is an
:class:`AuthorizationStateError`, which the web daemon answers with 400.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from opsctl.connectors.clients import resolve_client
from opsctl.connectors.connections import OAUTH_CREDENTIAL, StoredCredentials
from opsctl.connectors.executor_input import config_problems, describe_problems
from opsctl.connectors.model import Definition
from opsctl.connectors.oauth import (
    ClientCredentials,
    OAuthError,
    authorization_url,
    exchange_code,
    new_code_verifier,
    new_state,
    oauth2_auth,
)
from opsctl.connectors.oauth_state import STATE_TTL_S, PendingAuthorization, StateStore
from opsctl.connectors.registry import Connection, new_connection_id
from opsctl.crypto import delete_credential
from opsctl.errors import UsageError

MAX_LABEL = 200


class AuthorizationStateError(OAuthError):
    """The callback's ``state`` is missing, unknown, used, expired or for another connector."""


class AuthorizationRefused(OAuthError):
    """The vendor sent the user back with an error (``access_denied``) instead of a code."""


@dataclass(frozen=True)
class AuthorizationStart:
    connector_id: str
    url: str
    redirect_uri: str
    expires_at: float
    state: str = field(repr=False)


def callback_path(connector_id: str) -> str:
    return f"/api/oauth/{connector_id}/callback"


def check_config(definition: Definition, config: Mapping[str, Any]) -> None:
    """The connection config against the definition's ``config_schema``, every error at once."""
    problems = config_problems(definition, dict(config))
    if problems:
        raise UsageError(describe_problems(f"the config for connector {definition.id!r}", problems))


class OAuthFlows:
    """Begin and complete authorisations; tokens go through ``credentials``' store."""

    def __init__(
        self,
        credentials: StoredCredentials,
        states: StateStore,
        *,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        state_ttl_s: float = STATE_TTL_S,
    ) -> None:
        self.credentials = credentials
        self.registry = credentials.registry
        self.states = states
        self._session = session
        self._clock = clock
        self._ttl_s = state_ttl_s

    async def begin(
        self,
        definition: Definition,
        *,
        redirect_uri: str,
        who: str,
        config: Mapping[str, Any] | None = None,
        account_label: str | None = None,
    ) -> AuthorizationStart:
        auth = oauth2_auth(definition)
        config = dict(config or {})
        check_config(definition, config)
        if account_label is not None and len(account_label) > MAX_LABEL:
            raise UsageError(f"an account label must be at most {MAX_LABEL} characters")
        client = await resolve_client(self.registry, self.credentials.provider, definition.id)
        if client.client_id is None:
            raise UsageError(
                f"the client registered for {definition.id!r} is an API key, not an OAuth client"
            )
        state = new_state()
        verifier = new_code_verifier() if auth.pkce else None
        url = authorization_url(
            definition,
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            state=state,
            code_verifier=verifier,
            config=config,
        )
        now = self._clock()
        pending = PendingAuthorization(
            connector_id=definition.id,
            redirect_uri=redirect_uri,
            code_verifier=verifier,
            config=config,
            account_label=account_label,
            who=who,
            created_at=now,
            expires_at=now + self._ttl_s,
        )
        await self.states.put(state, pending)
        return AuthorizationStart(definition.id, url, redirect_uri, pending.expires_at, state)

    async def take_state(self, connector_id: str, state: str | None) -> PendingAuthorization:
        """The pending authorisation of ``state``, consumed; the error says what is wrong."""
        if not state:
            raise AuthorizationStateError("the callback carries no state parameter")
        pending = await self.states.take(state)
        if pending is None:
            raise AuthorizationStateError(
                "the state is unknown or was already used; start again at "
                f"/api/oauth/{connector_id}/authorize"
            )
        if pending.expired(self._clock()):
            raise AuthorizationStateError(
                "the state has expired (the authorisation took longer than "
                f"{self._ttl_s:.0f} s); start again at /api/oauth/{connector_id}/authorize"
            )
        if pending.connector_id != connector_id:
            raise AuthorizationStateError(
                f"the state was issued for connector {pending.connector_id!r}, not {connector_id!r}"
            )
        return pending

    async def complete(
        self,
        definition: Definition,
        *,
        state: str | None,
        code: str | None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> Connection:
        """Finish the authorisation: a new active connection holding the tokens."""
        pending = await self.take_state(definition.id, state)
        if error:
            detail = f": {error_description}" if error_description else ""
            raise AuthorizationRefused(
                f"the vendor did not authorise the connection: {error}{detail}", error=error
            )
        if not code:
            raise AuthorizationStateError("the callback carries no code parameter")
        client = await resolve_client(self.registry, self.credentials.provider, definition.id)
        if client.client_id is None:
            raise UsageError(f"the client registered for {definition.id!r} is not an OAuth client")
        token = await exchange_code(
            self._session,
            definition,
            ClientCredentials(client.client_id, client.secret),
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
            config=pending.config,
            clock=self._clock,
        )
        connection_id = new_connection_id()
        await self.credentials.store_token(connection_id, token, if_version=0)
        try:
            return await self.registry.create_connection(
                definition.id,
                who=pending.who,
                account_label=pending.account_label,
                config=pending.config,
                connection_id=connection_id,
            )
        except BaseException:
            await delete_credential(self.credentials.store, connection_id, OAUTH_CREDENTIAL)
            raise
