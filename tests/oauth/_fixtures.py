"""Fixtures shared by tests/oauth and tests/registry: a local vendor, definitions against it,
settings over each database, and the opened store, keyring and secret provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opsctl.connectors.connections import StoredCredentials
from opsctl.connectors.loader import Catalog, load_definitions
from opsctl.connectors.registry import ConnectorRegistry
from opsctl.crypto import Keyring, open_keyring
from opsctl.secrets import ProviderSet, SecretProvider
from opsctl.settings import Settings
from opsctl.store import Store, connect, migrate
from tests.conftest import SettingsFactory
from tests.oauth._vendor import (
    API_KEY,
    CLIENT_SECRET,
    Vendor,
    key_definition,
    oauth_definition,
    running_vendor,
    write_definitions,
)

APP_URL = "http://app.test"
TOKEN = "operator-token-oauth-tests-0123456789"


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    async with running_vendor() as running:
        yield running


@pytest.fixture
def defs(tmp_path: Path, vendor: Vendor) -> Path:
    return write_definitions(
        tmp_path / "defs", oauth_definition(vendor.url), key_definition(vendor.url)
    )


@pytest.fixture
def reg_env(defs: Path) -> dict[str, str]:
    """What the environment holds: the definitions, the secrets the references name."""
    return {
        "DEFINITIONS_PATH": str(defs),
        "VENDOR_CLIENT_SECRET": CLIENT_SECRET,
        "VENDOR_API_KEY": API_KEY,
        "APP_URL": APP_URL,
        "OPSCTL_API_TOKEN": TOKEN,
    }


@pytest.fixture
def reg_settings(
    backend: str,
    make_settings: SettingsFactory,
    request: pytest.FixtureRequest,
    reg_env: dict[str, str],
) -> Settings:
    if backend == "sqlite":
        return make_settings(**reg_env)
    return make_settings(DATABASE_URL=request.getfixturevalue("pg_url"), **reg_env)


@dataclass
class Opened:
    settings: Settings
    store: Store
    keyring: Keyring
    provider: SecretProvider
    registry: ConnectorRegistry

    def catalog(self) -> Catalog:
        return load_definitions(list(self.settings.definitions_paths))

    def credentials(self, **kw: Any) -> StoredCredentials:
        return StoredCredentials(self.store, self.keyring, self.provider, **kw)


@pytest.fixture
async def opened(reg_settings: Settings) -> AsyncIterator[Opened]:
    store = await connect(reg_settings)
    await migrate(store)
    keyring = await open_keyring(store, reg_settings)
    providers = ProviderSet(reg_settings, reg_settings.environ)
    try:
        yield Opened(reg_settings, store, keyring, providers.primary, ConnectorRegistry(store))
    finally:
        await providers.close()
        await keyring.source.close()
        await store.close()
