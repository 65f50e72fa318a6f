"""Re-encryption of credentials rows to the active key: batches, a saved cursor, compare-and-set.

A *pass* visits, in primary-key order, the rows that are not on its target (the active key).
Each batch is one transaction under a named lock: check the target is still active, read the
cursor, read up to ``batch`` rows after it, re-encrypt them, update each one only if its
``row_version`` and key are still those read, and save the cursor. A crash loses at most the
batch under way (rolled back) and a restart resumes at the cursor; several daemons take turns
batch by batch. A writer's newer value always wins: it moved ``row_version`` (and wrote under
the active key already), so the compare-and-set skips that row.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opsctl.constants import KEYS_REENCRYPT_LOCK, ROTATION_BATCH
from opsctl.crypto.credentials import credential_binding
from opsctl.crypto.errors import CryptoError, KeyNotFound
from opsctl.crypto.keyring import Keyring
from opsctl.crypto.keys import hold_active
from opsctl.store.base import Queryable, Store

log = logging.getLogger("opsctl.crypto.rotation")

_STATE_COLUMNS = (
    "target_key_id, cursor_connection_id, cursor_name, moved, failed, passes,"
    " started_at, updated_at, finished_at"
)
# Row values compare like the primary key's index, so each batch is one index range scan.
_NEXT_ROWS = (
    "SELECT connection_id, name, ciphertext, key_id, row_version FROM credentials"
    " WHERE key_id <> $1 AND (connection_id, name) > ($2, $3)"
    " ORDER BY connection_id, name LIMIT $4"
)
_NEW_PASS = (
    f"INSERT INTO rotation_state ({_STATE_COLUMNS}) VALUES ($1, '', '', 0, 0, 1, $2, $2, NULL)"
)
_CAS_POSTGRES = (
    "UPDATE credentials AS c SET ciphertext = u.ciphertext, key_id = $5"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])"
    " AS u(connection_id, name, row_version, ciphertext)"
    " WHERE c.connection_id = u.connection_id AND c.name = u.name"
    " AND c.row_version = u.row_version AND c.key_id <> $5"
    " RETURNING c.connection_id, c.name"
)
_CAS_SQLITE = (
    "UPDATE credentials SET ciphertext = $4, key_id = $5"
    " WHERE connection_id = $1 AND name = $2 AND row_version = $3 AND key_id <> $5"
)
_HOLDS = "SELECT 1 FROM credentials WHERE connection_id = $1 AND name = $2 AND ciphertext = $3"


@dataclass(frozen=True)
class PassState:
    """The saved progress of the pass towards one target key (a ``rotation_state`` row)."""

    target: str
    cursor: tuple[str, str]
    moved: int
    failed: int
    passes: int
    started_at: float
    updated_at: float
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "moved": self.moved,
            "failed": self.failed,
            "passes": self.passes,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
        }


def _state(row: dict[str, Any]) -> PassState:
    return PassState(
        target=row["target_key_id"],
        cursor=(row["cursor_connection_id"], row["cursor_name"]),
        moved=int(row["moved"]),
        failed=int(row["failed"]),
        passes=int(row["passes"]),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


@dataclass(frozen=True)
class BatchResult:
    """What one batch did. ``stale``: the target stopped being the active key (start over)."""

    target: str
    moved_from: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    failed: int = 0
    done: bool = False
    stale: bool = False

    @property
    def moved(self) -> int:
        return sum(self.moved_from.values())


async def load_pass(db: Queryable, target: str) -> PassState | None:
    """The saved pass towards ``target``, if one was ever started."""
    row = await db.fetchrow(
        f"SELECT {_STATE_COLUMNS} FROM rotation_state WHERE target_key_id = $1", target
    )
    return _state(row) if row else None


class Reencryptor:
    """Moves rows to the active key, one batch per call of :meth:`run_batch`."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        *,
        batch: int = ROTATION_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.store = store
        self.keyring = keyring
        self.batch = batch
        self._clock = clock

    async def start_pass(self, target: str) -> PassState:
        """Begin a fresh pass towards ``target`` from the first row (the cursor is reset)."""
        now = self._clock()
        async with self.store.locked(KEYS_REENCRYPT_LOCK) as tx:
            changed = await tx.execute(
                "UPDATE rotation_state SET cursor_connection_id = '', cursor_name = '',"
                " moved = 0, failed = 0, passes = passes + 1, started_at = $2,"
                " updated_at = $2, finished_at = NULL WHERE target_key_id = $1",
                target,
                now,
            )
            if not changed:
                await tx.execute(_NEW_PASS, target, now)
            state = await load_pass(tx, target)
        assert state is not None
        return state

    async def run_batch(self) -> BatchResult:
        """Re-encrypt the next batch of the pass towards the active key (started if need be)."""
        target = self.keyring.require_active()
        async with self.store.locked(KEYS_REENCRYPT_LOCK) as tx:
            if not await hold_active(tx, self.store.backend, target):
                return BatchResult(target, stale=True)
            state = await load_pass(tx, target)
            now = self._clock()
            if state is None:
                await tx.execute(_NEW_PASS, target, now)
                cursor = ("", "")
            elif state.finished:
                return BatchResult(target, done=True)
            else:
                cursor = state.cursor
            rows = await tx.fetch(_NEXT_ROWS, target, cursor[0], cursor[1], self.batch)
            if not rows:
                await tx.execute(
                    "UPDATE rotation_state SET finished_at = $2, updated_at = $2"
                    " WHERE target_key_id = $1",
                    target,
                    now,
                )
                return BatchResult(target, done=True)
            updates, failed = await self._reencrypt(tx, rows, target)
            moved = await self._compare_and_set(tx, updates, target)
            last = rows[-1]
            done = len(rows) < self.batch
            await tx.execute(
                "UPDATE rotation_state SET cursor_connection_id = $2, cursor_name = $3,"
                " moved = moved + $4, failed = failed + $5, updated_at = $6, finished_at = $7"
                " WHERE target_key_id = $1",
                target,
                last["connection_id"],
                last["name"],
                len(moved),
                failed,
                now,
                now if done else None,
            )
        source = {(r["connection_id"], r["name"]): r["key_id"] for r in rows}
        moved_from = Counter(source[pk] for pk in moved)
        return BatchResult(
            target,
            moved_from=dict(moved_from),
            skipped=len(updates) - len(moved),
            failed=failed,
            done=done,
        )

    async def _reencrypt(
        self, tx: Queryable, rows: Sequence[dict[str, Any]], target: str
    ) -> tuple[list[tuple[str, str, int, str]], int]:
        """(connection id, name, version read, new ciphertext) per row, and how many failed."""
        updates = []
        failed = 0
        refreshed = False
        for row in rows:
            connection_id, name = row["connection_id"], row["name"]
            bound = credential_binding(connection_id, name)
            try:
                try:
                    value = self.keyring.decrypt(row["ciphertext"], bound)
                except KeyNotFound:
                    if refreshed:
                        raise
                    refreshed = True  # a key created since the keyring last looked
                    await self.keyring.refresh(tx)
                    value = self.keyring.decrypt(row["ciphertext"], bound)
            except CryptoError as exc:
                failed += 1
                log.error(
                    "credential %r of connection %r cannot be re-encrypted, left on key %s: %s",
                    name,
                    connection_id,
                    row["key_id"],
                    exc,
                )
                continue
            text = self.keyring.encrypt(value, bound, key_id=target)
            updates.append((connection_id, name, int(row["row_version"]), text))
        return updates, failed

    async def _compare_and_set(
        self, tx: Queryable, updates: Sequence[tuple[str, str, int, str]], target: str
    ) -> list[tuple[str, str]]:
        """Apply the updates whose rows did not change since read; return their keys."""
        if not updates:
            return []
        if self.store.backend == "postgresql":
            columns = list(zip(*updates, strict=True))
            rows = await tx.fetch(_CAS_POSTGRES, *(list(c) for c in columns), target)
            return [(r["connection_id"], r["name"]) for r in rows]
        # SQLite: one call for the batch; total_changes() says how many rows it changed.
        before = int(await tx.fetchval("SELECT total_changes()"))
        await tx.executemany(_CAS_SQLITE, [(*update, target) for update in updates])
        changed = int(await tx.fetchval("SELECT total_changes()")) - before
        if changed == len(updates):
            return [(c, n) for c, n, _, _ in updates]
        moved = []  # some rows changed since read: those holding our ciphertext moved
        for connection_id, name, _, text in updates:
            if await tx.fetchval(_HOLDS, connection_id, name, text):
                moved.append((connection_id, name))
        return moved
