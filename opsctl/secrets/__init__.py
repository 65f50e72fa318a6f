"""Secret providers (env, file, aws) behind one interface, secret references, and resolution.

A *reference* such as ``aws:prod/opsctl#github_client_secret`` names a provider, a secret and
optionally one key of a JSON-object secret; :func:`resolve` reads it and registers the value with
the log redactor (:mod:`opsctl.secrets.redaction`). ``SECRET_MANAGER_PROVIDER`` picks the
provider :func:`create_provider` returns (where new secrets are stored); a reference naming
another provider is read through a sibling built from the same settings.

This module stays light (no boto3 import) so that settings and the CLI can import it cheaply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opsctl.errors import (
    EXIT_USAGE,
    SecretAccessDenied,
    SecretError,
    SecretNotFound,
    SecretsUnavailable,
)
from opsctl.secrets import redaction
from opsctl.secrets._base import CURRENT, PREVIOUS, SecretProvider
from opsctl.secrets._check import (
    ReferenceCheck,
    check_reference,
    check_references,
    settings_references,
)
from opsctl.secrets._reference import SYNTAX, SecretRef, is_reference, parse_reference
from opsctl.secrets.redaction import fingerprint, redact

if TYPE_CHECKING:
    from opsctl.settings import Settings

__all__ = [
    "CURRENT",
    "PREVIOUS",
    "SYNTAX",
    "ProviderSet",
    "ReferenceCheck",
    "SecretAccessDenied",
    "SecretError",
    "SecretNotFound",
    "SecretProvider",
    "SecretRef",
    "SecretsUnavailable",
    "check_reference",
    "check_references",
    "create_provider",
    "fingerprint",
    "is_reference",
    "parse_reference",
    "redact",
    "redaction",
    "resolve",
    "resolve_settings",
    "settings_references",
]


class ProviderSet:
    """The providers of one process, each built on first use from one Settings and environment.

    ``primary`` is the one ``SECRET_MANAGER_PROVIDER`` names. Each provider built here carries
    the set as its ``siblings`` attribute, so :func:`resolve` can follow a reference to another
    provider. :meth:`close` closes them all; a provider's own ``close`` closes only itself.
    """

    def __init__(
        self, settings: Settings, environ: Mapping[str, str], *, client: Any = None
    ) -> None:
        self._settings = settings
        self._environ = environ
        self._client = client
        self._built: dict[str, SecretProvider] = {}
        self.primary = self.get(settings.secret_manager_provider)

    def get(self, kind: str) -> SecretProvider:
        """The provider called ``kind`` (``env``, ``file`` or ``aws``), built on first use."""
        provider = self._built.get(kind)
        if provider is None:
            provider = _build(kind, self._settings, self._environ, self._client)
            provider.siblings = self  # type: ignore[attr-defined]
            self._built[kind] = provider
        return provider

    async def close_siblings(self) -> None:
        """Close every provider but the primary (the primary closes itself)."""
        others = [p for p in self._built.values() if p is not self.primary]
        self._built = {k: p for k, p in self._built.items() if p is self.primary}
        for provider in reversed(others):
            await provider.close()

    async def close(self) -> None:
        """Close every provider built here, the primary last."""
        await self.close_siblings()
        await self.primary.close()


def create_provider(
    settings: Settings, *, environ: Mapping[str, str] | None = None, client: Any = None
) -> SecretProvider:
    """The provider ``SECRET_MANAGER_PROVIDER`` names, built from ``settings``.

    ``environ`` is what the env provider reads and where the aws provider finds explicit
    credentials (default: the environment the settings were loaded from, ``.env`` included).
    ``client`` is a boto3 ``secretsmanager`` client for the aws provider to use (tests, custom
    sessions); by default it builds its own from ``AWS_REGION`` and the endpoint settings.
    """
    source = environ if environ is not None else settings.environ
    return ProviderSet(settings, source, client=client).primary


def _build(
    kind: str, settings: Settings, environ: Mapping[str, str], client: Any
) -> SecretProvider:
    if kind == "env":
        from opsctl.secrets._env import EnvProvider

        return EnvProvider(environ)
    if kind == "file":
        from opsctl.secrets._file import FileProvider

        return FileProvider(settings.secrets_file)
    if kind == "aws":
        from opsctl.secrets._aws import AwsProvider

        return AwsProvider(
            region=settings.aws_region,
            endpoint_url=settings.secrets_manager_endpoint_url,
            ttl_s=settings.secrets_cache_ttl_s,
            client=client,
            credentials={k: v for k, v in environ.items() if k.startswith("AWS_")},
        )
    raise SecretError(
        f"unknown secret provider {kind!r}",
        hint="SECRET_MANAGER_PROVIDER must be env, file or aws",
        exit_code=EXIT_USAGE,
    )


def _provider_for(provider: SecretProvider, ref: SecretRef) -> SecretProvider:
    if ref.provider == provider.name:
        return provider
    siblings = getattr(provider, "siblings", None)
    if isinstance(siblings, ProviderSet):
        return siblings.get(ref.provider)
    raise SecretError(
        f"secret reference {str(ref)!r} names the {ref.provider} provider, "
        f"but it was given the {provider.name} provider",
        hint=f"use a reference starting with {provider.name}: or build the provider "
        "with create_provider",
    )


async def resolve(provider: SecretProvider, ref: SecretRef | str) -> str:
    """The value a reference names; ``#key`` selects a key of a JSON-object secret.

    The value (and, for a JSON secret, every string in it) is registered with the redactor, so
    no log line can carry it afterwards.
    """
    if isinstance(ref, str):
        ref = parse_reference(ref)
    value = await _provider_for(provider, ref).get(ref.name)
    redaction.register(value)
    if ref.key is None:
        return value
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SecretError(
            f"secret {ref.provider}:{ref.name} is not a JSON object, so {str(ref)!r} "
            f"cannot select the key {ref.key!r}",
            hint=f"store a JSON object in it, or drop '#{ref.key}'",
        )
    for leaf in document.values():
        if isinstance(leaf, str):
            redaction.register(leaf)
    if ref.key not in document or document[ref.key] is None:
        keys = ", ".join(sorted(document)) or "none"
        raise SecretNotFound(
            f"secret {ref.provider}:{ref.name} has no key {ref.key!r} (its keys: {keys})",
            hint="add the key to the secret or fix the reference",
        )
    selected = document[ref.key]
    if isinstance(selected, dict | list):
        text = json.dumps(selected)
    elif isinstance(selected, bool):
        text = "true" if selected else "false"
    else:
        text = str(selected)
    redaction.register(text)
    return text


async def resolve_settings(settings: Settings, provider: SecretProvider) -> Settings:
    """A copy of ``settings`` with every secret given by reference replaced by its value.

    Today that is ``OPSCTL_API_TOKEN``: while it is a reference, ``settings.api_token`` is
    ``None`` (no bearer token is accepted) until a daemon resolves it here at start-up.
    """
    if not settings.api_token_ref:
        return settings
    return settings.with_overrides(api_token=await resolve(provider, settings.api_token_ref))
