"""Credentials of connections for the executor: read, refreshed before expiry or after a 401.

:class:`CredentialSource` (the Protocol the executor sees, in
:mod:`opsctl.connectors.credentials`) is what the executor asks for the ``credentials.*``
variables of a call; :class:`StoredCredentials` answers from the store: an OAuth connection's
tokens (kept encrypted through the keyring under the connection id), or an API-key client's
reference resolved through the secret provider.

Refreshing an OAuth token is single-flight per connection: concurrent callers in one process
share one refresh task; across processes one lock (Redis ``SET NX PX`` when configured, a
database lease otherwise) lets one process call the vendor while the others wait for the
stored token's version to change. After taking the lock the holder reads the token again and
uses another process's fresh token if there is one, and it writes its own with a
compare-and-set on the row version, the last guard against a holder that outlived its lock.
A refused refresh (``invalid_grant``) marks the connection ``needs_reauth`` and raises
:class:`~opsctl.errors.ConnectionNeedsReauth`; it is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from opsctl.connectors.clients import key_credentials, resolve_client
from opsctl.connectors.credentials import CredentialSource
from opsctl.connectors.model import Definition, OAuth2Auth
from opsctl.connectors.oauth import (
    ClientCredentials,
    InvalidGrant,
    OAuthError,
    TokenSet,
    refresh_tokens,
)
from opsctl.connectors.refresh_lock import LOCK_TTL_S, RefreshLock, refresh_lock
from opsctl.connectors.registry import SYSTEM_OPERATOR, ConnectorRegistry
from opsctl.crypto import CredentialConflict, KeyNotFound, Keyring, get_credential, put_credential
from opsctl.crypto.credentials import decrypt_row
from opsctl.errors import ConnectionNeedsReauth, NotFound, UsageError
from opsctl.secrets import SecretProvider
from opsctl.store.base import Store

log = logging.getLogger("opsctl.connectors")

__all__ = ["OAUTH_CREDENTIAL", "CredentialSource", "StoredCredentials"]

OAUTH_CREDENTIAL = "oauth2"
"""The credential name under which a connection's token set (JSON) is stored."""
REFRESH_WAIT_S = 45.0
"""How long a caller waits for another process's refresh before giving up."""
REFRESH_POLL_S = 0.05


@dataclass(frozen=True)
class _Read:
    """One read of a connection and its stored token."""

    connector_id: str
    status: str
    status_reason: str | None
    config: Mapping[str, Any] = field(hash=False)
    token: TokenSet | None
    version: int


def _reauth(connection_id: str, connector_id: str, why: str) -> ConnectionNeedsReauth:
    return ConnectionNeedsReauth(
        f"connection {connection_id!r} of {connector_id} needs to be authorised again: {why}",
        connection_id=connection_id,
        hint=f"an operator opens GET /api/oauth/{connector_id}/authorize",
    )


class StoredCredentials:
    """:class:`CredentialSource` over the store, the keyring and the secret provider.

    ``redis`` (optional) makes the refresh lock Redis's; ``session`` is the HTTP client for
    the token endpoint (one is created, and closed by :meth:`close`, when not given).
    """

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        provider: SecretProvider,
        *,
        redis: aioredis.Redis | None = None,
        redis_prefix: str = "opsctl",
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        lock: RefreshLock | None = None,
        wait_s: float = REFRESH_WAIT_S,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.provider = provider
        self.registry = ConnectorRegistry(store, clock=clock)
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._lock = lock or refresh_lock(store, redis, redis_prefix, clock=clock)
        self._wait_s = wait_s
        self._inflight: dict[str, asyncio.Task[Mapping[str, str]]] = {}

    async def __aenter__(self) -> StoredCredentials:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        for task in list(self._inflight.values()):
            with contextlib.suppress(BaseException):
                await task
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # --- the protocol ------------------------------------------------------------------

    async def credentials(
        self, connection_id: str | None, definition: Definition
    ) -> Mapping[str, str]:
        """See :class:`CredentialSource`. ``connection_id`` may be ``None`` for an API-key
        connector: then the registered client's reference is the credential."""
        auth = definition.auth
        if isinstance(auth, OAuth2Auth):
            if connection_id is None:
                raise UsageError(
                    f"connector {definition.id!r} uses oauth2: a connection is required",
                    hint=f"authorise one: GET /api/oauth/{definition.id}/authorize",
                )
            read = await self._read(connection_id, definition)
            token = self._usable(connection_id, definition, read)
            now = self._clock()
            if (
                auth.refresh.enabled
                and token.refresh_token
                and token.expiring(now, auth.refresh.margin_s)
            ):
                return await self._refresh(connection_id, definition, read.version)
            return {"access_token": token.access_token}
        if auth.type == "none":
            return {}
        return await self._key_credentials(connection_id, definition)

    async def refreshed(
        self, connection_id: str | None, definition: Definition, rejected: Mapping[str, str]
    ) -> Mapping[str, str]:
        """See :class:`CredentialSource`."""
        auth = definition.auth
        if not isinstance(auth, OAuth2Auth):
            why = f"the vendor refused the {auth.type} credential"
            if connection_id is None:
                raise ConnectionNeedsReauth(
                    f"{why} registered for connector {definition.id!r}",
                    hint=f"register a working one: opsctl connectors register-client "
                    f"{definition.id} --api-key-ref …",
                )
            await self._mark(connection_id, why)
            raise _reauth(connection_id, definition.id, why)
        if connection_id is None:
            raise UsageError(f"connector {definition.id!r} uses oauth2: a connection is required")
        read = await self._read(connection_id, definition)
        token = self._usable(connection_id, definition, read)
        if token.access_token != rejected.get("access_token"):
            return {"access_token": token.access_token}  # refreshed since the call was made
        if not auth.refresh.enabled or not token.refresh_token:
            why = "the vendor refused the access token and it cannot be refreshed"
            await self._mark(connection_id, why)
            raise _reauth(connection_id, definition.id, why)
        return await self._refresh(connection_id, definition, read.version)

    # --- storing tokens ----------------------------------------------------------------

    async def store_token(
        self, connection_id: str, token: TokenSet, *, if_version: int | None = None
    ) -> int:
        """Write ``token`` encrypted (compare-and-set with ``if_version``); its new version."""
        info = await put_credential(
            self.store,
            self.keyring,
            connection_id,
            OAUTH_CREDENTIAL,
            token.dumps(),
            if_version=if_version,
            clock=self._clock,
        )
        return info.version

    async def token(self, connection_id: str, definition: Definition) -> TokenSet | None:
        """The stored token set of a connection (for display and tests), or ``None``."""
        return (await self._read(connection_id, definition)).token

    # --- reading -----------------------------------------------------------------------

    async def _read(self, connection_id: str, definition: Definition) -> _Read:
        row = await self.store.fetchrow(
            "SELECT c.connector_id, c.status, c.status_reason, c.config, k.ciphertext,"
            " k.row_version FROM connections c LEFT JOIN credentials k"
            " ON k.connection_id = c.id AND k.name = $2 WHERE c.id = $1",
            connection_id,
            OAUTH_CREDENTIAL,
        )
        if row is None:
            raise NotFound(f"connection {connection_id!r} does not exist")
        if row["connector_id"] != definition.id:
            raise UsageError(
                f"connection {connection_id!r} belongs to connector {row['connector_id']!r}, "
                f"not {definition.id!r}"
            )
        token = None
        if row["ciphertext"] is not None:
            try:
                text = decrypt_row(self.keyring, connection_id, OAUTH_CREDENTIAL, row["ciphertext"])
            except KeyNotFound:  # a key another process created since we looked
                await self.keyring.refresh(self.store)
                text = decrypt_row(self.keyring, connection_id, OAUTH_CREDENTIAL, row["ciphertext"])
            token = TokenSet.loads(text)
        return _Read(
            row["connector_id"],
            row["status"],
            row["status_reason"],
            json.loads(row["config"]),
            token,
            int(row["row_version"] or 0),
        )

    def _usable(self, connection_id: str, definition: Definition, read: _Read) -> TokenSet:
        if read.status == "needs_reauth":
            raise _reauth(connection_id, definition.id, read.status_reason or "marked so")
        if read.token is None:
            raise _reauth(connection_id, definition.id, "it holds no token")
        return read.token

    async def _key_credentials(
        self, connection_id: str | None, definition: Definition
    ) -> Mapping[str, str]:
        if connection_id is not None:
            connection = await self.registry.require_connection(connection_id, definition.id)
            if connection.status == "needs_reauth":
                raise _reauth(connection_id, definition.id, connection.status_reason or "marked so")
            stored = {}
            for name in definition.credential_fields:
                with contextlib.suppress(NotFound):
                    stored[name] = await get_credential(
                        self.store, self.keyring, connection_id, name
                    )
            if len(stored) == len(definition.credential_fields):
                return stored
        client = await resolve_client(self.registry, self.provider, definition.id)
        return key_credentials(definition, client.secret)

    async def _mark(self, connection_id: str, why: str) -> None:
        changed = await self.registry.set_connection_status(
            connection_id, "needs_reauth", who=SYSTEM_OPERATOR, reason=why
        )
        if changed:
            log.warning(
                "connection %s needs to be authorised again: %s",
                connection_id,
                why,
                extra={"connection_id": connection_id},
            )

    # --- refreshing --------------------------------------------------------------------

    async def _refresh(
        self, connection_id: str, definition: Definition, stale_version: int
    ) -> Mapping[str, str]:
        """Join this process's refresh of the connection, or start one."""
        task = self._inflight.get(connection_id)
        if task is None:
            task = asyncio.create_task(
                self._refresh_across_processes(connection_id, definition, stale_version),
                name=f"oauth-refresh:{connection_id}",
            )
            self._inflight[connection_id] = task

            def forget(done: asyncio.Task[Mapping[str, str]]) -> None:
                if self._inflight.get(connection_id) is done:
                    del self._inflight[connection_id]
                if not done.cancelled():
                    done.exception()  # retrieved: callers that left must not leave a warning

            task.add_done_callback(forget)
        # One caller's cancellation must not cancel the refresh the others wait for.
        return await asyncio.shield(task)

    async def _refresh_across_processes(
        self, connection_id: str, definition: Definition, stale_version: int
    ) -> Mapping[str, str]:
        owner = uuid.uuid4().hex
        give_up = time.monotonic() + self._wait_s
        while True:
            if await self._lock.acquire(connection_id, owner, LOCK_TTL_S):
                try:
                    return await self._refresh_holding_lock(
                        connection_id, definition, stale_version
                    )
                finally:
                    await self._lock.release(connection_id, owner)
            await asyncio.sleep(REFRESH_POLL_S)
            read = await self._read(connection_id, definition)
            token = self._usable(connection_id, definition, read)
            if read.version != stale_version:
                return {"access_token": token.access_token}  # another process refreshed
            if time.monotonic() >= give_up:
                raise OAuthError(
                    f"gave up after {self._wait_s:.0f} s waiting for another process to "
                    f"refresh the token of connection {connection_id!r}"
                )

    async def _refresh_holding_lock(
        self, connection_id: str, definition: Definition, stale_version: int
    ) -> Mapping[str, str]:
        read = await self._read(connection_id, definition)
        token = self._usable(connection_id, definition, read)
        if read.version != stale_version:
            return {"access_token": token.access_token}
        client = await resolve_client(self.registry, self.provider, definition.id)
        if client.client_id is None:
            raise OAuthError(f"the client registered for {definition.id!r} has no client id")
        try:
            fresh = await refresh_tokens(
                self._http(),
                definition,
                ClientCredentials(client.client_id, client.secret),
                token,
                config=read.config,
                clock=self._clock,
            )
        except InvalidGrant as exc:
            why = f"the vendor refused the refresh token ({exc.error})"
            await self._mark(connection_id, why)
            raise _reauth(connection_id, definition.id, why) from None
        try:
            await self.store_token(connection_id, fresh, if_version=stale_version)
        except CredentialConflict:
            # Someone wrote a newer token while we held an expired lease: theirs wins.
            current = self._usable(
                connection_id, definition, await self._read(connection_id, definition)
            )
            return {"access_token": current.access_token}
        log.info(
            "refreshed the access token of connection %s",
            connection_id,
            extra={"connection_id": connection_id, "connector": definition.id},
        )
        return {"access_token": fresh.access_token}
