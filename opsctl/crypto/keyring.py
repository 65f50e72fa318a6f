"""The keyring: data keys unwrapped from ``encryption_keys`` under the master key, one active.

Data keys (DEKs) encrypt values; each is stored wrapped (AES-256-GCM) under a master key (KEK)
that never touches the database. A :class:`Keyring` holds the master keys its source gave and
the data keys it could unwrap; :meth:`Keyring.refresh` picks up keys other processes created.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from opsctl.constants import MASTER_KEY_RELOAD_S
from opsctl.crypto import envelope
from opsctl.crypto.errors import CryptoError, DecryptionFailed, KeyNotFound, MasterKeyError
from opsctl.errors import OpsctlError
from opsctl.store.base import Queryable

log = logging.getLogger("opsctl.crypto")

ACTIVE, INACTIVE, RETIRED = "active", "inactive", "retired"
_KEY_COLUMNS = (
    "id, state, wrapped_key, master_key_id, created_at, activated_at, deactivated_at, retired_at"
)


def master_key_id(material: bytes) -> str:
    """A public name for a master key: 16 hex digits of an HMAC, revealing nothing of it."""
    return hmac.new(material, b"opsctl master key id", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class MasterKey:
    """A key-encryption key and where it came from (for messages; never its value)."""

    material: bytes = field(repr=False)
    origin: str = ""

    def __post_init__(self) -> None:
        if len(self.material) != envelope.KEY_BYTES:
            raise MasterKeyError(f"the master key from {self.origin} is not 256 bits long")

    @property
    def id(self) -> str:
        return master_key_id(self.material)


class MasterKeySource(Protocol):
    """Where master keys come from: the dev keyring file, or a secret provider in production."""

    description: str
    """Where the master key lives, safe to print (a path or a secret reference)."""

    async def master_keys(self, *, fresh: bool = False) -> list[MasterKey]:
        """The current master key first, then older ones still able to unwrap data keys.
        ``fresh`` reads past any cache of the secret provider."""

    async def escrow(self, key_id: str, material: bytes) -> None:
        """Keep a copy of a new data key beside the master key (file or provider), or nothing."""

    async def close(self) -> None:
        """Release the provider, if any."""


@dataclass(frozen=True)
class DataKey:
    """One row of ``encryption_keys``, without its material."""

    id: str
    state: str
    master_key_id: str
    created_at: float
    activated_at: float | None
    deactivated_at: float | None
    retired_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "master_key_id": self.master_key_id,
            "created_at": self.created_at,
            "activated_at": self.activated_at,
            "deactivated_at": self.deactivated_at,
            "retired_at": self.retired_at,
        }


def key_number(key_id: str) -> int:
    """``k12`` → 12; ids of another shape sort first."""
    return int(key_id[1:]) if key_id[:1] == "k" and key_id[1:].isdigit() else 0


def _wrap_binding(key_id: str) -> bytes:
    return envelope.binding("encryption_keys", key_id)


def wrap(master: MasterKey, key_id: str, material: bytes) -> str:
    """A data key encrypted under ``master``, bound to its id (a wrapped key moved to another
    id does not unwrap)."""
    return envelope.seal(AESGCM(master.material), master.id, material, _wrap_binding(key_id))


async def load_keys(db: Queryable) -> list[DataKey]:
    """Every data key, oldest first."""
    rows = await db.fetch(f"SELECT {_KEY_COLUMNS} FROM encryption_keys")
    keys = [_data_key(row) for row in rows]
    return sorted(keys, key=lambda k: (key_number(k.id), k.id))


def _data_key(row: dict[str, Any]) -> DataKey:
    return DataKey(
        id=row["id"],
        state=row["state"],
        master_key_id=row["master_key_id"],
        created_at=row["created_at"],
        activated_at=row["activated_at"],
        deactivated_at=row["deactivated_at"],
        retired_at=row["retired_at"],
    )


class Keyring:
    """Data keys by id, unwrapped; encrypts with the active one, decrypts with any."""

    def __init__(self, source: MasterKeySource, masters: Sequence[MasterKey]) -> None:
        if not masters:
            raise MasterKeyError(f"no master key in {source.description}")
        self.source = source
        self.masters = list(masters)
        self.keys: dict[str, DataKey] = {}
        self.active_id: str | None = None
        self._aeads: dict[str, AESGCM] = {}
        self._materials: dict[str, bytes] = {}  # kept only to rewrap under a new master key
        self._unusable: dict[str, MasterKeyError] = {}
        self._reloaded_at: float | None = None

    @classmethod
    async def open(cls, source: MasterKeySource, db: Queryable) -> Keyring:
        """Load the master keys, then every data key; raise :class:`MasterKeyError` when the
        active data key does not unwrap (a wrong master key), before anything is written."""
        keyring = cls(source, await source.master_keys())
        await keyring.refresh(db)
        return keyring

    @property
    def master(self) -> MasterKey:
        """The current master key: new data keys are wrapped under it."""
        return self.masters[0]

    async def refresh(self, db: Queryable) -> None:
        """Read ``encryption_keys`` again and unwrap the keys not seen before.

        A key wrapped under a master key this keyring lacks makes it ask its source again (at
        most once a minute): the secret may have been rotated since this process started.
        Raises :class:`MasterKeyError` when the active key does not unwrap.
        """
        rows = await db.fetch(f"SELECT {_KEY_COLUMNS} FROM encryption_keys")
        keys = sorted((_data_key(row) for row in rows), key=lambda k: (key_number(k.id), k.id))
        wrapped = {row["id"]: row["wrapped_key"] for row in rows}
        fresh = [k for k in keys if k.id not in self._aeads]
        if any(not self._has_master(k) for k in fresh):
            await self._reload_masters()
        for key in fresh:
            self._unwrap(key, wrapped[key.id])
        self.keys = {k.id: k for k in keys}
        active = [k.id for k in keys if k.state == ACTIVE]
        self.active_id = active[0] if active else None
        if self.active_id is not None and self.active_id in self._unusable:
            raise self._unusable[self.active_id]

    def _has_master(self, key: DataKey) -> bool:
        return any(m.id == key.master_key_id for m in self.masters)

    async def _reload_masters(self) -> None:
        now = time.monotonic()
        if self._reloaded_at is not None and now - self._reloaded_at < MASTER_KEY_RELOAD_S:
            return
        self._reloaded_at = now
        try:
            await self.reload_masters(fresh=True)
        except OpsctlError as exc:
            log.warning("could not reload the master key from %s: %s", self.source.description, exc)

    async def reload_masters(self, *, fresh: bool = False) -> bool:
        """Ask the source for its master keys again (``fresh``: past the provider's cache);
        keep the ones already held too, so keys wrapped under them still unwrap until
        :meth:`rewrap` moves them. Return whether the current master key changed."""
        masters = await self.source.master_keys(fresh=fresh)
        changed = masters[0].id != self.master.id
        if changed:
            log.info("the master key from %s changed", self.source.description)
        self.masters = masters + [m for m in self.masters if m.id not in {n.id for n in masters}]
        return changed

    def _unwrap(self, key: DataKey, wrapped: str) -> None:
        try:
            material = self.unwrap(key, wrapped)
        except MasterKeyError as exc:
            self._unusable[key.id] = exc
            return
        self._aeads[key.id] = AESGCM(material)
        self._materials[key.id] = material
        self._unusable.pop(key.id, None)

    def unwrap(self, key: DataKey, wrapped: str, *, label: str = "data key") -> bytes:
        """The material of ``key`` (its ``wrapped_key`` column) under this keyring's master
        keys; :class:`MasterKeyError` saying why not (``label`` names the key in it)."""
        master = next((m for m in self.masters if m.id == key.master_key_id), None)
        if master is None:
            held = ", ".join(m.id for m in self.masters)
            plural = "s" if len(self.masters) > 1 else ""
            raise MasterKeyError(
                f"{label} {key.id} was wrapped by another master key ({key.master_key_id}): "
                f"this process's {self.source.description}, master key{plural} {held}, cannot "
                "unwrap it; every process must share one master key",
                hint="point OPSCTL_MASTER_KEY_REF (or the dev keyring file) at the master key "
                "this database was set up with",
            )
        try:
            parsed = envelope.parse(wrapped)
            aead = AESGCM(master.material)
            material = envelope.open_envelope(aead, parsed, _wrap_binding(key.id))
        except DecryptionFailed:
            raise MasterKeyError(
                f"{label} {key.id} does not unwrap under master key {master.id}: its wrapped "
                "material in encryption_keys was altered"
            ) from None
        if len(material) != envelope.KEY_BYTES:
            raise MasterKeyError(f"{label} {key.id} is not 256 bits long")
        return material

    async def verify_active(self, db: Queryable) -> DataKey | None:
        """Prove that the active data key unwraps under this keyring's master keys, reading
        its row alone (no other key, no second look at the master key source) and keeping
        nothing: the check behind readiness and ``opsctl keys status``. Return the key (None:
        the database has none yet); raise :class:`MasterKeyError` saying why it does not."""
        row = await db.fetchrow(
            f"SELECT {_KEY_COLUMNS} FROM encryption_keys WHERE state = $1 LIMIT 1", ACTIVE
        )
        if row is None:
            return None
        key = _data_key(row)
        self.unwrap(key, row["wrapped_key"], label="the active data key")
        return key

    def require_active(self) -> str:
        """The active key id; :class:`CryptoError` when the database has none yet."""
        if self.active_id is None:
            raise CryptoError(
                "there is no active data key", hint="create one with: opsctl keys rotate"
            )
        return self.active_id

    def _aead(self, key_id: str) -> AESGCM:
        aead = self._aeads.get(key_id)
        if aead is not None:
            return aead
        if key_id in self._unusable:
            raise self._unusable[key_id]
        raise KeyNotFound(f"data key {key_id} does not exist in encryption_keys")

    def encrypt(self, plaintext: bytes, bound_to: bytes, *, key_id: str | None = None) -> str:
        """An envelope of ``plaintext`` under ``key_id`` (default: the active key)."""
        kid = key_id or self.require_active()
        return envelope.seal(self._aead(kid), kid, plaintext, bound_to)

    def decrypt(self, text: str, bound_to: bytes) -> bytes:
        """The plaintext of an envelope bound to ``bound_to``; :class:`CryptoError` otherwise."""
        parsed = envelope.parse(text)
        return envelope.open_envelope(self._aead(parsed.key_id), parsed, bound_to)

    def fingerprint(self, value: bytes) -> str:
        """A short keyed digest of a value: equal values match, yet a database dump cannot be
        used to confirm guesses of a password (a plain hash could)."""
        key = hmac.new(self.master.material, b"opsctl credential fingerprint", hashlib.sha256)
        return hmac.new(key.digest(), value, hashlib.sha256).hexdigest()[:16]

    def new_key(self, key_id: str) -> tuple[bytes, str]:
        """Fresh material for ``key_id`` and its wrapping under the current master key."""
        material = os.urandom(envelope.KEY_BYTES)
        return material, wrap(self.master, key_id, material)

    async def rewrap(self, db: Queryable) -> list[str]:
        """Wrap under the current master key every data key still wrapped under an older one
        (after the master key secret rotated); return their ids."""
        done = []
        for key in list(self.keys.values()):
            aead = self._aeads.get(key.id)
            if key.master_key_id == self.master.id or aead is None:
                continue
            material = self._materials[key.id]
            changed = await db.execute(
                "UPDATE encryption_keys SET wrapped_key = $1, master_key_id = $2"
                " WHERE id = $3 AND master_key_id = $4",
                wrap(self.master, key.id, material),
                self.master.id,
                key.id,
                key.master_key_id,
            )
            if changed:
                done.append(key.id)
        if done:
            log.info("wrapped data key(s) %s under the current master key", ", ".join(done))
            await self.refresh(db)
        return done
