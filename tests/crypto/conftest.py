"""Fixtures for the crypto tests: a migrated store (SQLite or PostgreSQL) and its keyring."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from opsctl.crypto import Keyring, open_keyring
from opsctl.settings import Settings
from opsctl.store import Store, migrate
from tests.secrets.conftest import MotoServer


@pytest.fixture
async def keyring(store: Store, store_settings: Settings) -> AsyncIterator[Keyring]:
    """The store migrated, with its first data key (k1) under the dev keyring file."""
    await migrate(store)
    opened = await open_keyring(store, store_settings)
    yield opened
    await opened.source.close()


async def snapshot(store: Store) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Every row of encryption_keys and credentials, to show that nothing changed."""
    keys = await store.fetch("SELECT * FROM encryption_keys ORDER BY id")
    creds = await store.fetch("SELECT * FROM credentials ORDER BY connection_id, name")
    return keys, creds


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's Secrets Manager server as a real process, for the aws master key tests."""
    server = MotoServer(tmp_path_factory.mktemp("moto-crypto") / "moto.log")
    yield server
    server.stop()
