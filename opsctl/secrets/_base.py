"""The provider interface and what every provider shares: stages, defaults, stage checks."""

from __future__ import annotations

from typing import Protocol

from opsctl.errors import SecretNotFound

CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"
CACHE_TTL_S = 300.0
"""Default of ``SECRETS_CACHE_TTL_S``: how long the aws provider trusts a value it read."""
AWS_RETRIES = 3
"""Attempts of a throttled or unreachable Secrets Manager call before SecretsUnavailable."""
AWS_BACKOFF_S = 0.2
"""First retry delay; doubled each attempt, with jitter."""
AWS_CONNECT_TIMEOUT_S = 2.0
AWS_READ_TIMEOUT_S = 5.0


class SecretProvider(Protocol):
    """Where secrets are read and written: ``env``, ``file`` or ``aws``.

    ``get`` returns the current value (``stage=None``) or, on aws, ``stage="AWSPREVIOUS"`` for
    the version before it; ``put`` stores a new current version; ``ping`` times one round trip.
    Every method raises :class:`~opsctl.errors.SecretError` subclasses naming the secret.
    """

    name: str

    async def get(self, name: str, *, stage: str | None = None) -> str: ...

    async def put(self, name: str, value: str) -> None: ...

    async def ping(self) -> float: ...

    async def close(self) -> None: ...


def require_current(provider: str, name: str, stage: str | None) -> None:
    """Providers that keep one version refuse any stage but the current one."""
    if stage not in (None, CURRENT):
        raise SecretNotFound(
            f"the {provider} secret provider keeps only the current version of {name!r}, "
            f"so it has no {stage}",
            hint="versions (AWSPREVIOUS) need SECRET_MANAGER_PROVIDER=aws",
        )
