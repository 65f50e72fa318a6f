"""The env provider: reads the mapping it was given, never writes."""

from __future__ import annotations

import pytest

from opsctl.errors import SecretError, SecretNotFound
from opsctl.health import check_secrets
from opsctl.secrets import PREVIOUS, create_provider
from opsctl.secrets._env import EnvProvider
from tests.conftest import SettingsFactory


async def test_reads_the_given_environment() -> None:
    provider = EnvProvider({"GITHUB_CLIENT_SECRET": "gh-value", "EMPTY": ""})
    assert await provider.get("GITHUB_CLIENT_SECRET") == "gh-value"
    with pytest.raises(SecretNotFound, match="environment variable MISSING is not set"):
        await provider.get("MISSING")
    with pytest.raises(SecretNotFound, match="EMPTY is not set"):
        await provider.get("EMPTY")
    with pytest.raises(SecretNotFound, match="AWSPREVIOUS"):
        await provider.get("GITHUB_CLIENT_SECRET", stage=PREVIOUS)


async def test_is_read_only() -> None:
    with pytest.raises(SecretError, match=r"'X'.*env secret provider is read-only"):
        await EnvProvider({}).put("X", "value")


async def test_default_provider_reads_the_settings_environment(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(MY_TOKEN="from-settings-env")
    provider = create_provider(settings)
    assert provider.name == "env"
    assert await provider.get("MY_TOKEN") == "from-settings-env"
    assert await create_provider(settings, environ={"MY_TOKEN": "given"}).get("MY_TOKEN") == "given"
    result = await check_secrets(provider)
    assert result.status == "pass" and result.name == "secrets"
    assert (await check_secrets(None)).status == "fail"
    await provider.close()
