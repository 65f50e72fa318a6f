"""Envelope encryption of stored credentials: a keyring of data keys under one master key.

``open_keyring`` is the entry point: it reads the master key from where the settings say
(:mod:`opsctl.crypto.master`), unwraps the data keys (:mod:`opsctl.crypto.keyring`) and, unless
told otherwise, creates the first one. Credentials are then put and read through
:mod:`opsctl.crypto.credentials`; keys are rotated and retired through :mod:`opsctl.crypto.keys`;
rows move to a new key through :mod:`opsctl.crypto.rotation`. ``check_active_key`` proves,
writing nothing, that this process's master key unwraps the active data key (readiness).
"""

from __future__ import annotations

from dataclasses import dataclass

from opsctl.crypto.credentials import (
    CredentialInfo,
    delete_credential,
    get_credential,
    list_credentials,
    put_credential,
    put_credentials,
)
from opsctl.crypto.errors import (
    CredentialConflict,
    CryptoError,
    DecryptionFailed,
    KeyInUse,
    KeyNotFound,
    MasterKeyError,
)
from opsctl.crypto.keyring import DataKey, Keyring, MasterKey, MasterKeySource
from opsctl.crypto.keys import (
    Rotated,
    ensure_active_key,
    key_status,
    key_usage,
    retire_key,
    rotate_key,
)
from opsctl.settings import Settings
from opsctl.store.base import Store

__all__ = [
    "CredentialConflict",
    "CredentialInfo",
    "CryptoError",
    "DataKey",
    "DecryptionFailed",
    "KeyCheck",
    "KeyInUse",
    "KeyNotFound",
    "Keyring",
    "MasterKey",
    "MasterKeyError",
    "MasterKeySource",
    "Rotated",
    "check_active_key",
    "delete_credential",
    "ensure_active_key",
    "get_credential",
    "key_status",
    "key_usage",
    "list_credentials",
    "open_keyring",
    "put_credential",
    "put_credentials",
    "retire_key",
    "rotate_key",
]


async def open_keyring(
    store: Store,
    settings: Settings,
    *,
    create: bool = True,
    source: MasterKeySource | None = None,
) -> Keyring:
    """The keyring of ``store``'s data keys under the settings' master key.

    With ``create``, a database without keys gets its first one. Raises
    :class:`MasterKeyError` (exit 2) for a missing or wrong master key before anything is
    written. The caller closes ``keyring.source`` when done.
    """
    from opsctl.crypto.master import KeyringFile, master_key_source

    source = source or master_key_source(settings)
    try:
        if isinstance(source, KeyringFile):
            source.create = not await store.fetchval("SELECT count(*) FROM encryption_keys")
        keyring = await Keyring.open(source, store)
        if create:
            await ensure_active_key(store, keyring)
    except BaseException:
        await source.close()
        raise
    return keyring


@dataclass(frozen=True)
class KeyCheck:
    """What :func:`check_active_key` proved."""

    source: str
    """Where this process's master key comes from, safe to print."""
    masters: int
    """How many master keys the source gave (0: the dev keyring file is made with the first
    data key and does not exist yet)."""
    active: DataKey | None
    """The active data key, which unwraps under them; None while the database has none."""


async def check_active_key(
    store: Store, settings: Settings, *, source: MasterKeySource | None = None
) -> KeyCheck:
    """Read this process's master key(s) and prove that the active data key unwraps under
    them, writing nothing (a missing dev keyring file is not created).

    Raises :class:`MasterKeyError` (exit 2) when it does not unwrap, naming the master key that
    wrapped it and the one this process holds, or when the master key cannot be read; a
    :class:`~opsctl.errors.ConfigError` in production without ``OPSCTL_MASTER_KEY_REF``.
    """
    from opsctl.crypto.master import KeyringFile, master_key_source

    owned = source is None
    source = source or master_key_source(settings)
    try:
        if isinstance(source, KeyringFile):
            keys = await store.fetchval("SELECT count(*) FROM encryption_keys")
            if not keys and not source.path.exists():
                return KeyCheck(source.description, 0, None)
            source.create = False
        keyring = Keyring(source, await source.master_keys())
        active = await keyring.verify_active(store)
        return KeyCheck(source.description, len(keyring.masters), active)
    finally:
        if owned:
            await source.close()
