"""Envelope encryption of stored credentials: a keyring of data keys under one master key.

``open_keyring`` is the entry point: it reads the master key from where the settings say
(:mod:`opsctl.crypto.master`), unwraps the data keys (:mod:`opsctl.crypto.keyring`) and, unless
told otherwise, creates the first one. Credentials are then put and read through
:mod:`opsctl.crypto.credentials`; keys are rotated and retired through :mod:`opsctl.crypto.keys`;
rows move to a new key through :mod:`opsctl.crypto.rotation`.
"""

from __future__ import annotations

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
    "KeyInUse",
    "KeyNotFound",
    "Keyring",
    "MasterKey",
    "MasterKeyError",
    "MasterKeySource",
    "Rotated",
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
