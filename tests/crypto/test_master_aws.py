"""The master key in AWS Secrets Manager (moto's server over real HTTP): data keys escrowed
beside it, and a rotation of the master secret (AWSCURRENT → AWSPREVIOUS) survived by
rewrapping the data keys under the new master key."""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from opsctl.crypto import MasterKeyError, get_credential, open_keyring, put_credential
from opsctl.crypto.keyring import master_key_id
from opsctl.secrets import create_provider
from opsctl.settings import Settings
from opsctl.store import Store, migrate
from tests.secrets.conftest import MotoServer

pytestmark = pytest.mark.slow


def _aws(settings: Settings, moto: MotoServer, reference: str) -> Settings:
    return settings.with_overrides(
        secret_manager_provider="aws",
        aws_region="us-east-1",
        secrets_manager_endpoint_url=moto.url,
        master_key_ref=reference,
        environ={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )


async def _put_master(settings: Settings, name: str) -> bytes:
    material = os.urandom(32)
    provider = create_provider(settings)
    try:
        document = {"master_key": base64.b64encode(material).decode(), "other": "x"}
        await provider.put(name, json.dumps(document))
    finally:
        await provider.close()
    return material


async def test_master_key_from_aws_escrow_and_master_rotation(
    store: Store, store_settings: Settings, moto: MotoServer
) -> None:
    name = f"test/{uuid.uuid4().hex[:12]}"
    settings = _aws(store_settings, moto, f"aws:{name}#master_key")
    await migrate(store)
    with pytest.raises(MasterKeyError, match=f"cannot read the master key from .*{name}") as err:
        await open_keyring(store, settings)
    assert err.value.exit_code == 2

    first = await _put_master(settings, name)
    keyring = await open_keyring(store, settings)
    try:
        assert keyring.master.id == master_key_id(first)
        await put_credential(store, keyring, "github", "token", "ghp_value")
        provider = create_provider(settings)
        escrowed = await provider.get(f"{name}/data-keys/k1")
        await provider.close()
        assert len(base64.b64decode(escrowed)) == 32
    finally:
        await keyring.source.close()

    # The secret is rotated in AWS: AWSCURRENT is a new key, AWSPREVIOUS the one k1 is under.
    second = await _put_master(settings, name)
    keyring = await open_keyring(store, settings)
    try:
        assert [m.id for m in keyring.masters] == [master_key_id(second), master_key_id(first)]
        assert await get_credential(store, keyring, "github", "token") == "ghp_value"
        assert await keyring.rewrap(store) == ["k1"]
    finally:
        await keyring.source.close()
    wrapped_under = await store.fetchval("SELECT master_key_id FROM encryption_keys")
    assert wrapped_under == master_key_id(second)

    # Rotated again: the first key is gone from AWS, and nothing needs it any more.
    third = await _put_master(settings, name)
    keyring = await open_keyring(store, settings)
    try:
        assert keyring.master.id == master_key_id(third)
        assert await get_credential(store, keyring, "github", "token") == "ghp_value"
    finally:
        await keyring.source.close()
