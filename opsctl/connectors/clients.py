"""API clients: registering one for a connector, and resolving it through the secret provider.

An OAuth client is a client id plus a reference to its secret; an API-key client (for the
``api_key``, ``bearer`` and ``basic`` auth types) is a reference to the key, token or
``username:password``. Registration proves the reference resolves and keeps the value's
fingerprint; the value itself is only ever held in memory, when it is needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from opsctl.connectors.model import Definition
from opsctl.connectors.registry import ApiClient, ClientKind, ConnectorRegistry
from opsctl.errors import NotFound, OpsctlError, SecretError, UsageError
from opsctl.secrets import SecretProvider, fingerprint, parse_reference, resolve

RESOLVE_TIMEOUT_S = 10.0

CLIENT_KINDS: Mapping[str, ClientKind] = {
    "oauth2": "oauth",
    "api_key": "api_key",
    "bearer": "api_key",
    "basic": "api_key",
}
"""The client kind each auth type needs (``none`` needs none)."""


class ClientNotRegistered(NotFound):
    """A connector needs an API client and none is registered."""


@dataclass(frozen=True)
class ResolvedClient:
    """A registered client with its secret read from the provider (never logged or shown)."""

    connector_id: str
    kind: ClientKind
    client_id: str | None
    secret: str = field(repr=False)
    fingerprint: str


def client_kind(definition: Definition) -> ClientKind | None:
    """The kind of client the definition's auth needs; ``None`` for ``auth.type: none``."""
    return CLIENT_KINDS.get(definition.auth.type)


def register_command(definition: Definition) -> str:
    """The command that registers a client for ``definition``, for hints."""
    if client_kind(definition) == "oauth":
        return (
            f"opsctl connectors register-client {definition.id} --client-id ID "
            "--secret-ref provider:name[#key]"
        )
    return f"opsctl connectors register-client {definition.id} --api-key-ref provider:name[#key]"


async def _resolve(provider: SecretProvider, reference: str, timeout_s: float) -> str:
    try:
        return await asyncio.wait_for(resolve(provider, reference), timeout_s)
    except TimeoutError:
        raise SecretError(
            f"secret reference {reference!r} did not resolve within {timeout_s:.0f} s"
        ) from None


async def register_client(
    registry: ConnectorRegistry,
    provider: SecretProvider,
    definition: Definition,
    *,
    who: str,
    client_id: str | None = None,
    secret_ref: str | None = None,
    api_key_ref: str | None = None,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> ApiClient:
    """Register the client after proving its reference parses and resolves.

    :class:`UsageError` (exit 2) when the options do not fit the connector's auth type or the
    reference does not parse; a :class:`SecretError` (exit 1) when it does not resolve. Nothing
    is written unless the secret resolves.
    """
    kind = client_kind(definition)
    if kind is None:
        raise UsageError(f"connector {definition.id!r} uses auth type none: it needs no API client")
    if kind == "oauth":
        if api_key_ref is not None:
            raise UsageError(
                f"connector {definition.id!r} uses oauth2: give --client-id and --secret-ref, "
                "not --api-key-ref"
            )
        if not client_id or not client_id.strip() or secret_ref is None:
            raise UsageError(
                f"connector {definition.id!r} uses oauth2: both --client-id and --secret-ref "
                "are required"
            )
        reference = secret_ref
    else:
        if client_id is not None or secret_ref is not None:
            raise UsageError(
                f"connector {definition.id!r} uses {definition.auth.type} auth: give "
                "--api-key-ref, not --client-id/--secret-ref"
            )
        if api_key_ref is None:
            raise UsageError(f"connector {definition.id!r} needs --api-key-ref")
        reference = api_key_ref
    parse_reference(reference)  # UsageError-like SecretError, exit 2
    value = await _resolve(provider, reference, timeout_s)
    if definition.auth.type == "basic":
        basic_credentials(value, reference)
    return await registry.put_client(
        definition.id,
        kind,
        client_id=client_id.strip() if client_id else None,
        secret_ref=reference,
        secret_fingerprint=fingerprint(value),
        who=who,
    )


async def resolve_client(
    registry: ConnectorRegistry,
    provider: SecretProvider,
    connector_id: str,
    *,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> ResolvedClient:
    """The connector's registered client with its secret; :class:`ClientNotRegistered` when
    there is none, a :class:`SecretError` when the reference no longer resolves."""
    client = await registry.client(connector_id)
    if client is None:
        raise ClientNotRegistered(
            f"no API client is registered for connector {connector_id!r}",
            hint=f"run: opsctl connectors register-client {connector_id} …",
        )
    value = await _resolve(provider, client.secret_ref, timeout_s)
    return ResolvedClient(connector_id, client.kind, client.client_id, value, fingerprint(value))


def basic_credentials(value: str, reference: str = "the secret") -> dict[str, str]:
    """``username`` and ``password`` from a JSON object holding both, or ``user:password``."""
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    if isinstance(document, dict):
        username, password = document.get("username"), document.get("password")
        if isinstance(username, str) and isinstance(password, str):
            return {"username": username, "password": password}
    elif ":" in value:
        username, _, password = value.partition(":")
        return {"username": username, "password": password}
    raise OpsctlError(
        f"{reference} must hold 'username:password' or a JSON object with username and "
        "password for basic auth"
    )


def key_credentials(definition: Definition, value: str) -> dict[str, str]:
    """The ``credentials.*`` variables an API-key client's value provides."""
    auth = definition.auth.type
    if auth == "api_key":
        return {"api_key": value}
    if auth == "bearer":
        return {"token": value}
    if auth == "basic":
        return basic_credentials(value)
    raise UsageError(f"connector {definition.id!r} uses {auth} auth, which takes no API key")
