"""Credentials on SQLite and PostgreSQL: round trip, compare-and-set, and every bad input
(tampered ciphertext, missing key, wrong master key, a ciphertext moved to another row) failing
with a clear error and no data changed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest

from opsctl.crypto import (
    CredentialConflict,
    DecryptionFailed,
    KeyNotFound,
    Keyring,
    MasterKeyError,
    delete_credential,
    get_credential,
    list_credentials,
    open_keyring,
    put_credential,
    put_credentials,
    rotate_key,
)
from opsctl.crypto.keyring import master_key_id
from opsctl.crypto.master import KeyringFile
from opsctl.errors import NotFound, UsageError
from opsctl.settings import Settings
from opsctl.store import Store, connect, migrate
from tests.crypto.conftest import snapshot

SECRET = "ghp_0123456789abcdefSECRET"


async def test_round_trip_and_listing_never_shows_values(store: Store, keyring: Keyring) -> None:
    info = await put_credential(store, keyring, "github", "token", SECRET)
    await put_credential(store, keyring, "github", "refresh", "r-" + SECRET)
    await put_credential(store, keyring, "gitlab", "token", "ünïcødé ✓ " + SECRET)
    assert (info.key_id, info.version) == ("k1", 1)
    assert await get_credential(store, keyring, "github", "token") == SECRET
    assert await get_credential(store, keyring, "gitlab", "token") == "ünïcødé ✓ " + SECRET

    listed = await list_credentials(store, "github")
    assert [c.name for c in listed] == ["refresh", "token"]
    assert SECRET not in json.dumps([c.to_json() for c in listed])
    assert listed[1].fingerprint == info.fingerprint and len(info.fingerprint) == 16
    row = await store.fetchrow("SELECT ciphertext FROM credentials WHERE name = 'token'")
    assert row is not None and SECRET not in row["ciphertext"]
    assert row["ciphertext"].startswith("v1:k1:")

    again = await put_credential(store, keyring, "github", "token", SECRET + "2")
    assert again.version == 2 and again.created_at == info.created_at
    assert again.fingerprint != info.fingerprint
    assert await delete_credential(store, "github", "token")
    with pytest.raises(NotFound, match="connection 'github' has no credential 'token'"):
        await get_credential(store, keyring, "github", "token")
    with pytest.raises(UsageError, match="connection id"):
        await put_credential(store, keyring, "", "token", SECRET)


async def test_compare_and_set_writes(store: Store, keyring: Keyring) -> None:
    created = await put_credential(store, keyring, "c", "n", "one", if_version=0)
    with pytest.raises(CredentialConflict, match="expected version 0, but it is at version 1"):
        await put_credential(store, keyring, "c", "n", "two", if_version=0)
    updated = await put_credential(store, keyring, "c", "n", "two", if_version=created.version)
    with pytest.raises(CredentialConflict, match="expected version 1, but it is at version 2"):
        await put_credential(store, keyring, "c", "n", "three", if_version=1)
    with pytest.raises(CredentialConflict, match="it does not exist"):
        await put_credential(store, keyring, "c", "absent", "x", if_version=4)
    assert updated.version == 2
    assert await get_credential(store, keyring, "c", "n") == "two"


async def _corrupt(store: Store, connection_id: str, name: str, ciphertext: str) -> None:
    await store.execute(
        "UPDATE credentials SET ciphertext = $3 WHERE connection_id = $1 AND name = $2",
        connection_id,
        name,
        ciphertext,
    )


def _flip(text: str, index: int) -> str:
    swap = "A" if text[index] != "A" else "B"
    return text[:index] + swap + text[index + 1 :]


async def test_tampered_ciphertext_fails_clearly(store: Store, keyring: Keyring) -> None:
    await put_credential(store, keyring, "github", "token", SECRET)
    original = await store.fetchval("SELECT ciphertext FROM credentials")
    for bad in (_flip(original, -3), original[:-4], "v2" + original[2:], "not a ciphertext"):
        await _corrupt(store, "github", "token", bad)
        before = await snapshot(store)
        with pytest.raises(DecryptionFailed, match="credential 'token' of connection 'github'"):
            await get_credential(store, keyring, "github", "token")
        assert await snapshot(store) == before


async def test_ciphertext_moved_to_another_row_does_not_decrypt(
    store: Store, keyring: Keyring
) -> None:
    await put_credential(store, keyring, "github", "token", SECRET)
    await put_credential(store, keyring, "gitlab", "token", "other")
    await put_credential(store, keyring, "github", "token2", "x")
    stolen = await store.fetchval(
        "SELECT ciphertext FROM credentials WHERE connection_id = 'github' AND name = 'token'"
    )
    for connection_id, name in (("gitlab", "token"), ("github", "token2")):
        await _corrupt(store, connection_id, name, stolen)
        with pytest.raises(DecryptionFailed, match="copied from another row"):
            await get_credential(store, keyring, connection_id, name)


async def test_missing_key_id_fails_clearly(store: Store, keyring: Keyring) -> None:
    await put_credential(store, keyring, "github", "token", SECRET)
    original = await store.fetchval("SELECT ciphertext FROM credentials")
    await _corrupt(store, "github", "token", original.replace("v1:k1:", "v1:k9:"))
    before = await snapshot(store)
    with pytest.raises(KeyNotFound, match="data key k9 does not exist"):
        await get_credential(store, keyring, "github", "token")
    assert await snapshot(store) == before


async def test_wrong_master_key_changes_nothing(
    store: Store, keyring: Keyring, store_settings: Settings, tmp_path: Path
) -> None:
    await put_credential(store, keyring, "github", "token", SECRET)
    before = await snapshot(store)
    missing = KeyringFile(tmp_path / "elsewhere" / "keyring.json")
    with pytest.raises(MasterKeyError, match="does not exist, but the database holds data keys"):
        await open_keyring(store, store_settings, source=missing)
    assert not missing.path.exists()  # not replaced by a new master key

    wrong = KeyringFile(missing.path)
    await wrong.master_keys()  # another valid master key
    with pytest.raises(MasterKeyError, match="was wrapped by another master key") as caught:
        await open_keyring(store, store_settings, source=wrong)
    assert caught.value.exit_code == 2
    assert keyring.master.id in str(caught.value)
    assert await snapshot(store) == before
    # The right master key still reads everything.
    again = await open_keyring(store, store_settings)
    assert await get_credential(store, again, "github", "token") == SECRET


async def test_altered_wrapped_key_is_reported(
    store: Store, keyring: Keyring, store_settings: Settings
) -> None:
    wrapped = await store.fetchval("SELECT wrapped_key FROM encryption_keys WHERE id = 'k1'")
    await store.execute("UPDATE encryption_keys SET wrapped_key = $1", _flip(wrapped, -2))
    with pytest.raises(MasterKeyError, match=r"data key k1 does not unwrap.*altered"):
        await open_keyring(store, store_settings)


async def test_bad_keyring_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    source = KeyringFile(path)
    first = await source.master_keys()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert (await source.master_keys())[0].id == first[0].id  # created once, then read

    path.chmod(0o644)
    with pytest.raises(MasterKeyError, match=r"mode 644.*chmod 600"):
        await source.master_keys()
    path.chmod(0o600)
    path.write_text(json.dumps({"master_key": base64.b64encode(b"short").decode()}))
    with pytest.raises(MasterKeyError, match="not a 256-bit key") as caught:
        await source.master_keys()
    assert "c2hvcnQ" not in str(caught.value)  # the value is never shown
    path.write_text("{nope")
    with pytest.raises(MasterKeyError, match="not valid JSON"):
        await source.master_keys()


async def test_keyring_file_is_created_once_by_racing_processes(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keyring.json"
    keys = await asyncio.gather(*(KeyringFile(path).master_keys() for _ in range(8)))
    assert len({k[0].id for k in keys}) == 1


async def test_master_key_from_the_file_provider_with_escrow(
    store: Store, store_settings: Settings, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets.json"
    material = os.urandom(32)
    secrets.write_text(json.dumps({"opsctl": {"master_key": base64.b64encode(material).decode()}}))
    secrets.chmod(0o600)
    settings = store_settings.with_overrides(
        secret_manager_provider="file",
        secrets_file=secrets,
        master_key_ref="file:opsctl#master_key",
    )
    await migrate(store)
    keyring = await open_keyring(store, settings)
    try:
        assert keyring.master.id == master_key_id(material)
        assert "OPSCTL_MASTER_KEY_REF (file:opsctl#master_key)" in keyring.source.description
        await put_credential(store, keyring, "c", "n", SECRET)
        rotated = await rotate_key(store, keyring)
        assert rotated is not None and rotated.key_id == "k2"
    finally:
        await keyring.source.close()
    stored = json.loads(secrets.read_text())
    assert sorted(k for k in stored if "/data-keys/" in k) == [
        "opsctl/data-keys/k1",
        "opsctl/data-keys/k2",
    ]
    assert len(base64.b64decode(stored["opsctl/data-keys/k2"])) == 32

    # The master key changes in the file (no previous version kept there): a running process
    # still holds the old one, notices the change and rewraps the data keys under the new one.
    running = await open_keyring(store, settings)
    new = os.urandom(32)
    stored["opsctl"]["master_key"] = base64.b64encode(new).decode()
    secrets.write_text(json.dumps(stored))
    with pytest.raises(MasterKeyError, match="was wrapped by another master key"):
        await open_keyring(store, settings)  # a process started now cannot unwrap k2 yet
    assert await running.reload_masters(fresh=True)
    assert await running.rewrap(store) == ["k1", "k2"]
    await running.source.close()
    fresh = await open_keyring(store, settings)
    assert fresh.master.id == master_key_id(new)
    assert await get_credential(store, fresh, "c", "n") == SECRET
    await fresh.source.close()

    # A value that is not a 256-bit key, or a missing key in the secret: clear errors.
    secrets.write_text(json.dumps({"opsctl": {"master_key": "too short"}}))
    with pytest.raises(MasterKeyError, match=r"OPSCTL_MASTER_KEY_REF .* is not a 256-bit key"):
        await open_keyring(store, settings)
    missing = settings.with_overrides(master_key_ref="file:opsctl#nope")
    with pytest.raises(MasterKeyError, match=r"cannot read the master key.*no key 'nope'"):
        await open_keyring(store, missing)


async def test_rotation_is_decided_once_among_racing_processes(
    store: Store, keyring: Keyring, store_settings: Settings
) -> None:
    others = [await connect(store_settings) for _ in range(3)]
    try:
        keyrings = [await open_keyring(s, store_settings) for s in others]
        results = await asyncio.gather(
            *(rotate_key(s, k, replacing="k1") for s, k in zip(others, keyrings, strict=True))
        )
        for opened in keyrings:
            await opened.source.close()
    finally:
        for other in others:
            await other.close()
    assert sorted(r.key_id for r in results if r is not None) == ["k2"]
    states = await store.fetch("SELECT id, state FROM encryption_keys ORDER BY id")
    assert [(r["id"], r["state"]) for r in states] == [("k1", "inactive"), ("k2", "active")]


async def test_a_stale_keyring_writes_under_the_new_key(
    store: Store, keyring: Keyring, store_settings: Settings
) -> None:
    other = await connect(store_settings)
    try:
        elsewhere = await open_keyring(other, store_settings)
        await rotate_key(other, elsewhere)
        await elsewhere.source.close()
    finally:
        await other.close()
    assert keyring.active_id == "k1"  # not refreshed yet
    info = await put_credential(store, keyring, "c", "n", SECRET)
    assert info.key_id == "k2" and keyring.active_id == "k2"
    count = await put_credentials(store, keyring, [("c", f"n{i}", "v") for i in range(10)])
    assert count == 10
    assert await store.fetchval("SELECT count(*) FROM credentials WHERE key_id = 'k2'") == 11
