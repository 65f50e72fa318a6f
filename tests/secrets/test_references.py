"""Secret references: parsing, resolution across providers, settings that take them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsctl.errors import EXIT_USAGE, ConfigError, SecretError, SecretNotFound
from opsctl.secrets import (
    SYNTAX,
    SecretRef,
    create_provider,
    parse_reference,
    resolve,
    resolve_settings,
    settings_references,
)
from opsctl.secrets._env import EnvProvider
from opsctl.secrets.redaction import redact
from tests.conftest import SettingsFactory


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "aws:prod/opsctl#github_client_secret",
            SecretRef("aws", "prod/opsctl", "github_client_secret"),
        ),
        ("env:GITHUB_CLIENT_SECRET", SecretRef("env", "GITHUB_CLIENT_SECRET", None)),
        ("file:github#client_secret", SecretRef("file", "github", "client_secret")),
        (
            "aws:arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/opsctl-AbCdEf#k",
            SecretRef(
                "aws",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/opsctl-AbCdEf",
                "k",
            ),
        ),
    ],
)
def test_parses(text: str, expected: SecretRef) -> None:
    assert parse_reference(text) == expected
    assert str(parse_reference(text)) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "it is empty"),
        ("prod/opsctl", "no provider prefix"),
        ("vault:prod/opsctl", "unknown provider 'vault'"),
        ("aws:", "the secret name is empty"),
        ("aws:#key", "the secret name is empty"),
        ("aws:prod/opsctl#", "the key after '#' is empty"),
        ("aws:prod/opsctl#a#b", "the key 'a#b'"),
        ("env:1BAD", "not an environment variable name"),
        ("env:lower-case", "not an environment variable name"),
        ("aws:has space", "not a Secrets Manager name"),
        ("aws:bad!chars", "not a Secrets Manager name"),
        ("file:has space", "must have no spaces"),
        (" env:X", "leading or trailing spaces"),
    ],
)
def test_malformed_references_are_clear(text: str, why: str) -> None:
    with pytest.raises(SecretError) as caught:
        parse_reference(text)
    message = str(caught.value)
    assert f"secret reference {text!r} does not parse" in message
    assert why in message
    assert SYNTAX in message
    assert caught.value.exit_code == EXIT_USAGE


async def test_resolve_follows_a_reference_to_another_provider(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"github": {"client_secret": "from-file"}}))
    (tmp_path / "s.json").chmod(0o600)
    settings = make_settings(SECRETS_FILE="s.json", ENV_SECRET="from-env")
    provider = create_provider(settings)
    assert provider.name == "env"
    assert await resolve(provider, "env:ENV_SECRET") == "from-env"
    assert await resolve(provider, "file:github#client_secret") == "from-file"
    await provider.close()


async def test_resolve_refuses_a_foreign_reference_without_siblings() -> None:
    with pytest.raises(SecretError, match="names the file provider, but it was given the env"):
        await resolve(EnvProvider({}), "file:x")


async def test_resolve_keys_of_json_secrets() -> None:
    provider = EnvProvider(
        {
            "DOC": json.dumps({"a": "alpha-value", "n": 42, "nested": {"x": 1}, "none": None}),
            "PLAIN": "not-json-value",
        }
    )
    assert await resolve(provider, "env:DOC#a") == "alpha-value"
    assert await resolve(provider, "env:DOC#n") == "42"
    assert await resolve(provider, "env:DOC#nested") == '{"x": 1}'
    with pytest.raises(SecretNotFound, match="env:DOC has no key 'none'"):
        await resolve(provider, "env:DOC#none")
    with pytest.raises(SecretError, match="env:PLAIN is not a JSON object"):
        await resolve(provider, "env:PLAIN#a")
    # Resolving registers values with the redactor, the whole JSON and each of its strings.
    assert redact("a=alpha-value p=not-json-value") == "a=*** p=***"


def test_settings_take_references(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings(
        OPSCTL_API_TOKEN="aws:prod/opsctl#api_token",
        GITHUB_CLIENT_SECRET_REF="env:GH",
        OPSCTL_MASTER_KEY_REF="aws:prod/opsctl-master",
    )
    assert settings.api_token is None  # no bearer token accepted until it is resolved
    assert settings.api_token_ref == "aws:prod/opsctl#api_token"
    assert settings.secret_refs == (("GITHUB_CLIENT_SECRET_REF", "env:GH"),)
    assert settings_references(settings) == [
        ("OPSCTL_API_TOKEN", "aws:prod/opsctl#api_token"),
        ("OPSCTL_MASTER_KEY_REF", "aws:prod/opsctl-master"),
        ("GITHUB_CLIENT_SECRET_REF", "env:GH"),
    ]
    literal = make_settings(OPSCTL_API_TOKEN="abc123")
    assert literal.api_token == "abc123" and literal.api_token_ref is None
    assert settings_references(literal) == []
    assert "environ=" not in repr(settings) and "api_token=" not in repr(settings)


async def test_resolve_settings_fills_the_api_token(make_settings: SettingsFactory) -> None:
    settings = make_settings(OPSCTL_API_TOKEN="env:REAL_TOKEN", REAL_TOKEN="t0ken-value")
    provider = create_provider(settings)
    resolved = await resolve_settings(settings, provider)
    assert resolved.api_token == "t0ken-value"
    plain = make_settings(OPSCTL_API_TOKEN="abc")
    assert await resolve_settings(plain, provider) is plain


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECRETS_CACHE_TTL_S": "soon"}, "SECRETS_CACHE_TTL_S must be a number of seconds"),
        ({"SECRETS_CACHE_TTL_S": "-1"}, "SECRETS_CACHE_TTL_S must be a number of seconds"),
        ({"AWS_REGION": "Europe"}, "AWS_REGION must be an AWS region"),
        ({"AWS_DEFAULT_REGION": "moon-1"}, "AWS_DEFAULT_REGION must be an AWS region"),
        ({"SECRETS_MANAGER_ENDPOINT_URL": "localhost:4566"}, "SECRETS_MANAGER_ENDPOINT_URL must"),
        ({"AWS_ENDPOINT_URL_SECRETS_MANAGER": "ftp://x"}, "AWS_ENDPOINT_URL_SECRETS_MANAGER must"),
        ({"GITHUB_SECRET_REF": "vault:x"}, "GITHUB_SECRET_REF: secret reference 'vault:x'"),
        ({"OPSCTL_API_TOKEN": "aws:bad name"}, "OPSCTL_API_TOKEN: secret reference"),
    ],
)
def test_bad_secret_settings_name_the_variable(
    make_settings: SettingsFactory, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(**env)


def test_secret_settings_defaults_and_fallbacks(make_settings: SettingsFactory) -> None:
    default = make_settings()
    assert default.secrets_cache_ttl_s == 300.0
    assert default.aws_region is None and default.secrets_manager_endpoint_url is None
    fallback = make_settings(
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:4566/",
        SECRETS_CACHE_TTL_S="0",
    )
    assert fallback.aws_region == "eu-west-1"
    assert fallback.secrets_manager_endpoint_url == "http://127.0.0.1:4566"
    assert fallback.secrets_cache_ttl_s == 0
    both = make_settings(AWS_REGION="us-gov-west-1", AWS_DEFAULT_REGION="eu-west-1")
    assert both.aws_region == "us-gov-west-1"
