"""The embedded SQLite store: one aiosqlite connection in WAL mode, writes serialised.

Several processes may open the same file (the CLI beside a daemon); WAL lets readers proceed
during a write and ``busy_timeout`` makes a second writer wait instead of failing at once.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from opsctl.errors import StoreError
from opsctl.store.base import Queryable, Row

# A quoted string or identifier is kept as it is; only a bare $N is a placeholder.
_PLACEHOLDER = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")|\$(\d+)")
BUSY_TIMEOUT_MS = 15_000


def to_sqlite(sql: str) -> str:
    """Rewrite ``$1`` placeholders to SQLite's ``?1``."""
    return _PLACEHOLDER.sub(lambda m: m.group(1) or f"?{m.group(2)}", sql)


def _wrap(exc: sqlite3.Error, path: Path) -> StoreError:
    text = str(exc)
    if "database is locked" in text:
        return StoreError(
            f"SQLite database {path} stayed locked by another process for "
            f"{BUSY_TIMEOUT_MS // 1000} s",
            hint="another process may hold a long write; retry, or use PostgreSQL",
        )
    if "readonly" in text or "read-only" in text:
        return StoreError(f"SQLite database {path} is read-only: {text}")
    return StoreError(f"SQLite error on {path}: {text}")


def _prepare_location(path: Path) -> None:
    """Create the database's directory; refuse a path that cannot hold a database file."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(
            f"cannot create the SQLite database in {parent}: it is a file, not a directory",
            hint="point OPSCTL_DATA_DIR or DATABASE_URL at a directory",
        ) from None
    except OSError as exc:
        raise StoreError(
            f"cannot create directory {parent} for the SQLite database: {exc.strerror}",
            hint="point OPSCTL_DATA_DIR or DATABASE_URL somewhere writable",
        ) from None
    if path.is_dir():
        raise StoreError(f"SQLite database path {path} is a directory, not a file")
    # Probe synchronously: an aiosqlite connect that fails leaves its thread racing the
    # event loop's shutdown, which prints a traceback after our one-line error.
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open SQLite database {path}: {exc}",
            hint="check that the file and its directory are readable and writable",
        ) from None


class _Conn:
    """Queries on the shared connection; the caller holds the store's lock."""

    def __init__(self, db: aiosqlite.Connection, path: Path):
        self._db = db
        self._path = path

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            cursor = await self._db.execute(to_sqlite(sql), args)
            count = cursor.rowcount
            await cursor.close()
        except sqlite3.Error as exc:
            raise _wrap(exc, self._path) from exc
        return count

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            await self._db.executemany(to_sqlite(sql), [tuple(r) for r in rows])
        except sqlite3.Error as exc:
            raise _wrap(exc, self._path) from exc

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            # One trip to aiosqlite's thread, not three (execute, fetchall, close): readiness
            # reads the database five times a request.
            rows = await self._db.execute_fetchall(to_sqlite(sql), args)
        except sqlite3.Error as exc:
            raise _wrap(exc, self._path) from exc
        return [dict(r) for r in rows]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return next(iter(row.values())) if row else None


class SQLiteStore:
    """The embedded default store."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, db: aiosqlite.Connection, path: Path):
        self._db = db
        self._path = path
        self._conn = _Conn(db, path)
        self._lock = asyncio.Lock()
        self.location = str(path)

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        _prepare_location(path)
        try:
            db = await aiosqlite.connect(
                str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open SQLite database {path}: {exc}",
                hint="check that the file and its directory are readable and writable",
            ) from exc
        db.row_factory = sqlite3.Row
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            await db.close()
            if "unable to open" in str(exc):
                raise StoreError(
                    f"cannot open SQLite database {path}: its directory is not writable",
                    hint=f"WAL mode needs to create {path.name}-wal and {path.name}-shm beside it",
                ) from exc
            raise StoreError(
                f"cannot use SQLite database {path}: {exc}",
                hint="the file may not be a SQLite database; move it aside or fix DATABASE_URL",
            ) from exc
        return cls(db, path)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._lock:
            return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._lock:
            return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._lock:
            return await self._conn.fetchval(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queryable]:
        async with self._lock:
            # IMMEDIATE takes the write lock up front, so two processes never both read
            # and then collide on the upgrade to a write.
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._db.in_transaction:
                    await self._db.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    def locked(self, name: str) -> Any:
        # A SQLite write transaction already excludes every other writer of the file.
        return self.transaction()

    async def ping(self) -> float:
        started = time.perf_counter()
        await self.fetchval("SELECT 1")
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._db.close()
