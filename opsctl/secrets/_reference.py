"""Secret references: ``provider:name[#key]``, parsed into a :class:`SecretRef`.

Kept free of heavy imports: ``opsctl.settings`` validates references with it at load time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opsctl.errors import EXIT_USAGE, SecretError

PROVIDERS = ("env", "file", "aws")
SYNTAX = "provider:name[#key] with provider env, file or aws, e.g. aws:prod/opsctl#api_token"

_LOOKS_LIKE = re.compile(r"^(?:env|file|aws):\S")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Secrets Manager names: letters, digits and /_+=.@- (ARNs add ':'); file names: no whitespace.
_AWS_NAME = re.compile(r"^[A-Za-z0-9/_+=.@:-]{1,2048}$")
_FILE_NAME = re.compile(r"^[^\s#]{1,512}$")
_KEY = re.compile(r"^[^\s#]{1,256}$")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: ``provider`` (env, file, aws), its ``name``, and an optional ``key``
    selecting one field of a JSON-object secret."""

    provider: str
    name: str
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.provider}:{self.name}" + (f"#{self.key}" if self.key else "")


def is_reference(text: str | None) -> bool:
    """True when ``text`` is meant as a reference (starts with ``env:``, ``file:`` or ``aws:``)."""
    return bool(text) and _LOOKS_LIKE.match(text or "") is not None


def parse_reference(text: str) -> SecretRef:
    """``aws:prod/opsctl#github_client_secret`` → ``SecretRef("aws", "prod/opsctl", "github_…")``.

    Raises :class:`SecretError` (exit 2) naming the text and the expected syntax.
    """

    def bad(why: str) -> SecretError:
        return SecretError(
            f"secret reference {text!r} does not parse: {why}",
            hint=f"expected {SYNTAX}",
            exit_code=EXIT_USAGE,
        )

    if not isinstance(text, str) or not text.strip():
        raise bad("it is empty")
    if text != text.strip():
        raise bad("it has leading or trailing spaces")
    provider, colon, rest = text.partition(":")
    if not colon:
        raise bad("it has no provider prefix")
    if provider not in PROVIDERS:
        raise bad(f"unknown provider {provider!r}")
    name, hash_, key = rest.partition("#")
    if not name:
        raise bad("the secret name is empty")
    if hash_ and not key:
        raise bad("the key after '#' is empty")
    if hash_ and not _KEY.match(key):
        raise bad(f"the key {key!r} must have no spaces or '#'")
    if provider == "env" and not _ENV_NAME.match(name):
        raise bad(f"{name!r} is not an environment variable name (letters, digits, '_')")
    if provider == "aws" and not _AWS_NAME.match(name):
        raise bad(f"{name!r} is not a Secrets Manager name or ARN (letters, digits, /_+=.@:-)")
    if provider == "file" and not _FILE_NAME.match(name):
        raise bad(f"{name!r} must have no spaces")
    return SecretRef(provider, name, key or None)
