"""Data key lifecycle: make a new key active, retire one that no row uses, report usage.

Key changes run under one named store lock, so two processes (two CLIs, or the daemon rotating a
key past its maximum age on several replicas) never both create a key. A writer holds a shared
lock on the active key's row while it writes (see :func:`hold_active`), so making another key
active waits for writes under the old one to commit: once a key is inactive, no new row ever
uses it, and a count of zero rows means it stays zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from opsctl.constants import KEYS_ROTATE_LOCK
from opsctl.crypto.errors import KeyInUse, KeyNotFound
from opsctl.crypto.keyring import ACTIVE, INACTIVE, RETIRED, DataKey, Keyring, key_number, load_keys
from opsctl.store.base import Queryable, Store


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()
"""``rotate_key(replacing=ANY)``: rotate whatever key is active."""


@dataclass(frozen=True)
class Rotated:
    """The outcome of a rotation: the new active key and the one it replaced."""

    key_id: str
    previous_id: str | None


async def hold_active(db: Queryable, backend: Literal["sqlite", "postgresql"], key_id: str) -> bool:
    """True when ``key_id`` is still the active key; on PostgreSQL also lock its row (shared)
    until the transaction ends, so a rotation waits for this writer instead of racing it.

    SQLite needs no row lock: its write transactions already exclude one another.
    """
    sql = "SELECT 1 FROM encryption_keys WHERE id = $1 AND state = 'active'"
    if backend == "postgresql":
        sql += " FOR SHARE"
    return bool(await db.fetchval(sql, key_id))


async def rotate_key(
    store: Store,
    keyring: Keyring,
    *,
    replacing: str | _Any | None = ANY,
    clock: Callable[[], float] = time.time,
) -> Rotated | None:
    """Create the next data key (``k<N+1>``), escrow it with the master key's source, make it
    active and the old one inactive, all in one transaction.

    ``replacing`` makes the change conditional: only when that key (None: no key at all) is
    still the active one, else return None, as a replica that lost the race to rotate does.
    """
    async with store.locked(KEYS_ROTATE_LOCK) as tx:
        active = await tx.fetchval("SELECT id FROM encryption_keys WHERE state = 'active'")
        if not isinstance(replacing, _Any) and active != replacing:
            return None
        ids = [row["id"] for row in await tx.fetch("SELECT id FROM encryption_keys")]
        key_id = f"k{max((key_number(i) for i in ids), default=0) + 1}"
        material, wrapped = keyring.new_key(key_id)
        # Escrow first: every key in the table then has a copy beside the master key.
        await keyring.source.escrow(key_id, material)
        now = clock()
        if active is not None:
            await tx.execute(
                "UPDATE encryption_keys SET state = 'inactive', deactivated_at = $1"
                " WHERE id = $2 AND state = 'active'",
                now,
                active,
            )
        await tx.execute(
            "INSERT INTO encryption_keys"
            " (id, state, wrapped_key, master_key_id, created_at, activated_at)"
            " VALUES ($1, 'active', $2, $3, $4, $4)",
            key_id,
            wrapped,
            keyring.master.id,
            now,
        )
    await keyring.refresh(store)
    return Rotated(key_id, active)


async def ensure_active_key(store: Store, keyring: Keyring) -> str:
    """The active key id, creating the first key when the database has none."""
    if keyring.active_id is None:
        await rotate_key(store, keyring, replacing=None)
        await keyring.refresh(store)
    return keyring.require_active()


async def retire_key(
    store: Store, key_id: str, *, clock: Callable[[], float] = time.time
) -> tuple[DataKey, bool]:
    """Mark an inactive key that no row uses as retired; return it and whether it changed.

    Raises :class:`KeyNotFound` for an unknown id and :class:`KeyInUse` for the active key or
    a key that rows are still encrypted with (with their count). Needs no master key.
    """
    async with store.locked(KEYS_ROTATE_LOCK) as tx:
        state = await tx.fetchval("SELECT state FROM encryption_keys WHERE id = $1", key_id)
        if state is None:
            raise KeyNotFound(f"data key {key_id} does not exist", hint="see: opsctl keys status")
        if state == ACTIVE:
            raise KeyInUse(
                f"data key {key_id} is the active key",
                hint="rotate first (opsctl keys rotate --wait), then retire it",
            )
        changed = False
        if state == INACTIVE:
            count = int(
                await tx.fetchval("SELECT count(*) FROM credentials WHERE key_id = $1", key_id)
            )
            if count:
                raise KeyInUse(
                    f"data key {key_id} still encrypts {count} row(s)",
                    hint="the encryption-rotation daemon moves them to the active key; "
                    "watch: opsctl keys status",
                )
            await tx.execute(
                "UPDATE encryption_keys SET state = 'retired', retired_at = $1"
                " WHERE id = $2 AND state = 'inactive'",
                clock(),
                key_id,
            )
            changed = True
        keys = {k.id: k for k in await load_keys(tx)}
    return keys[key_id], changed


async def rows_waiting(db: Queryable, active: str, key_ids: Iterable[str]) -> bool:
    """Whether any row is on one of ``key_ids`` other than ``active``: one index probe per key,
    cheap however large the table."""
    for key_id in key_ids:
        if key_id != active and await db.fetchval(
            "SELECT 1 FROM credentials WHERE key_id = $1 LIMIT 1", key_id
        ):
            return True
    return False


async def key_usage(db: Queryable) -> dict[str, int]:
    """How many credentials rows each data key encrypts."""
    rows = await db.fetch("SELECT key_id, count(*) AS n FROM credentials GROUP BY key_id")
    return {row["key_id"]: int(row["n"]) for row in rows}


async def key_status(db: Queryable, *, now: float | None = None) -> dict[str, Any]:
    """Keys, their ages and row counts, the active key and the re-encryption pass under way."""
    now = time.time() if now is None else now
    keys = await load_keys(db)
    usage = await key_usage(db)
    active = next((k.id for k in keys if k.state == ACTIVE), None)
    rotation = None
    if active is not None:
        rotation = await db.fetchrow(
            "SELECT target_key_id, moved, failed, passes, started_at, updated_at, finished_at"
            " FROM rotation_state WHERE target_key_id = $1",
            active,
        )
    items = []
    for key in keys:
        item = key.to_json()
        item["rows"] = usage.get(key.id, 0)
        item["age_s"] = max(0.0, now - key.created_at)
        if key.activated_at is not None:
            item["active_for_s"] = max(0.0, (key.deactivated_at or now) - key.activated_at)
        items.append(item)
    return {
        "active": active,
        "keys": items,
        "rows": sum(usage.values()),
        "pending": sum(n for kid, n in usage.items() if kid != active),
        "on_retired_keys": sum(usage.get(k.id, 0) for k in keys if k.state == RETIRED),
        "rotation": rotation,
    }
