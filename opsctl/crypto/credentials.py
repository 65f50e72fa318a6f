"""Connections' credentials (tokens, API keys), stored encrypted: put, get, list, delete.

Each value is sealed under the active data key and bound to its row (``credentials``, the
connection id, the name), so a ciphertext copied to another row does not decrypt. ``row_version``
counts changes of the value: a write with ``if_version`` is a compare-and-set, and the rotation
daemon re-encrypts a row only if its version is still the one it read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opsctl.crypto import envelope
from opsctl.crypto.errors import CredentialConflict, CryptoError, DecryptionFailed, KeyNotFound
from opsctl.crypto.keyring import Keyring
from opsctl.crypto.keys import hold_active
from opsctl.errors import NotFound, UsageError
from opsctl.store.base import Queryable, Store

_IDENT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_INFO_COLUMNS = "connection_id, name, key_id, fingerprint, row_version, created_at, updated_at"
_INSERT = (
    "INSERT INTO credentials (connection_id, name, ciphertext, key_id, fingerprint,"
    " row_version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)"
)
_UPSERT = (
    f"{_INSERT} ON CONFLICT (connection_id, name) DO UPDATE SET ciphertext = excluded.ciphertext,"
    " key_id = excluded.key_id, fingerprint = excluded.fingerprint,"
    " row_version = credentials.row_version + 1, updated_at = excluded.updated_at"
)
WRITE_ATTEMPTS = 3  # the active key changing this often during one write is a fault, not a race


@dataclass(frozen=True)
class CredentialInfo:
    """What may be shown of a stored credential: never its value."""

    connection_id: str
    name: str
    key_id: str
    fingerprint: str
    version: int
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "name": self.name,
            "key_id": self.key_id,
            "fingerprint": self.fingerprint,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def credential_binding(connection_id: str, name: str) -> bytes:
    """The associated data tying a ciphertext to its row."""
    return envelope.binding("credentials", connection_id, name)


def _check(connection_id: str, name: str) -> None:
    for label, value in (("connection id", connection_id), ("credential name", name)):
        if not isinstance(value, str) or not _IDENT.fullmatch(value):
            raise UsageError(f"a {label} must be 1-200 printable characters, got {value!r}")


def _info(row: dict[str, Any]) -> CredentialInfo:
    return CredentialInfo(
        connection_id=row["connection_id"],
        name=row["name"],
        key_id=row["key_id"],
        fingerprint=row["fingerprint"],
        version=int(row["row_version"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def writable_key(db: Queryable, store: Store, keyring: Keyring) -> str:
    """The active key id, held (see :func:`hold_active`) for the rest of ``db``'s transaction;
    a key changed by another process since the keyring last looked is picked up here."""
    for _ in range(WRITE_ATTEMPTS):
        key_id = keyring.require_active()
        if await hold_active(db, store.backend, key_id):
            return key_id
        await keyring.refresh(db)
    raise CryptoError("the active data key kept changing during one write; try again")


async def put_credential(
    store: Store,
    keyring: Keyring,
    connection_id: str,
    name: str,
    value: str,
    *,
    if_version: int | None = None,
    clock: Callable[[], float] = time.time,
) -> CredentialInfo:
    """Store ``value`` encrypted under the active key; return what may be shown of it.

    ``if_version`` makes it a compare-and-set: 0 creates only, N replaces version N only;
    anything else raises :class:`CredentialConflict` and changes nothing.
    """
    _check(connection_id, name)
    data = value.encode("utf-8")
    bound = credential_binding(connection_id, name)
    fingerprint = keyring.fingerprint(data)
    async with store.transaction() as tx:
        key_id = await writable_key(tx, store, keyring)
        text = keyring.encrypt(data, bound, key_id=key_id)
        now = clock()
        args = (connection_id, name, text, key_id, fingerprint, now)
        if if_version is None:
            row = await tx.fetchrow(f"{_UPSERT} RETURNING {_INFO_COLUMNS}", *args)
        elif if_version == 0:
            row = await tx.fetchrow(
                f"{_INSERT} ON CONFLICT (connection_id, name) DO NOTHING RETURNING {_INFO_COLUMNS}",
                *args,
            )
        else:
            row = await tx.fetchrow(
                "UPDATE credentials SET ciphertext = $3, key_id = $4, fingerprint = $5,"
                " row_version = row_version + 1, updated_at = $6"
                " WHERE connection_id = $1 AND name = $2 AND row_version = $7"
                f" RETURNING {_INFO_COLUMNS}",
                *args,
                if_version,
            )
        if row is None:
            current = await tx.fetchval(
                "SELECT row_version FROM credentials WHERE connection_id = $1 AND name = $2",
                connection_id,
                name,
            )
            found = "it does not exist" if current is None else f"it is at version {current}"
            raise CredentialConflict(
                f"credential {name!r} of connection {connection_id!r} was not written: "
                f"expected version {if_version}, but {found}"
            )
    return _info(row)


async def put_credentials(
    store: Store,
    keyring: Keyring,
    items: Iterable[tuple[str, str, str]],
    *,
    clock: Callable[[], float] = time.time,
) -> int:
    """Store many ``(connection id, name, value)`` at once, in one transaction (an import)."""
    rows = []
    async with store.transaction() as tx:
        key_id = await writable_key(tx, store, keyring)
        now = clock()
        for connection_id, name, value in items:
            _check(connection_id, name)
            data = value.encode("utf-8")
            text = keyring.encrypt(data, credential_binding(connection_id, name), key_id=key_id)
            rows.append((connection_id, name, text, key_id, keyring.fingerprint(data), now))
        await tx.executemany(_UPSERT, rows)
    return len(rows)


def decrypt_row(keyring: Keyring, connection_id: str, name: str, ciphertext: str) -> str:
    """The value of one row; the error names the row (never the value)."""
    try:
        data = keyring.decrypt(ciphertext, credential_binding(connection_id, name))
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed(
            f"credential {name!r} of connection {connection_id!r} is not UTF-8 text"
        ) from None
    except CryptoError as exc:
        raise type(exc)(
            f"credential {name!r} of connection {connection_id!r}: {exc.message}", hint=exc.hint
        ) from None


async def get_credential(store: Store, keyring: Keyring, connection_id: str, name: str) -> str:
    """The decrypted value; :class:`NotFound` when absent, :class:`CryptoError` when it does
    not decrypt (tampered with, moved from another row, or its key is missing)."""
    _check(connection_id, name)
    ciphertext = await store.fetchval(
        "SELECT ciphertext FROM credentials WHERE connection_id = $1 AND name = $2",
        connection_id,
        name,
    )
    if ciphertext is None:
        raise NotFound(f"connection {connection_id!r} has no credential {name!r}")
    try:
        return decrypt_row(keyring, connection_id, name, ciphertext)
    except KeyNotFound:
        await keyring.refresh(store)  # a key another process created since we looked
        return decrypt_row(keyring, connection_id, name, ciphertext)


async def list_credentials(db: Queryable, connection_id: str) -> list[CredentialInfo]:
    """A connection's credentials by name: key ids and fingerprints, never values."""
    rows = await db.fetch(
        f"SELECT {_INFO_COLUMNS} FROM credentials WHERE connection_id = $1 ORDER BY name",
        connection_id,
    )
    return [_info(row) for row in rows]


async def delete_credential(
    db: Queryable, connection_id: str, name: str, *, if_version: int | None = None
) -> bool:
    """Remove one credential; False when it was not there (or not at ``if_version``)."""
    sql = "DELETE FROM credentials WHERE connection_id = $1 AND name = $2"
    if if_version is None:
        return bool(await db.execute(sql, connection_id, name))
    return bool(await db.execute(f"{sql} AND row_version = $3", connection_id, name, if_version))
