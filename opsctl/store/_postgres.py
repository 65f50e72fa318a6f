"""The PostgreSQL store: an asyncpg pool, driver errors turned into operator sentences."""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg

from opsctl.errors import StoreError
from opsctl.settings import redact_url
from opsctl.store.base import Queryable, Row

CONNECT_TIMEOUT_S = 5.0


def _where(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}/{parts.path.lstrip('/') or parts.username or 'postgres'}"


def connect_error(url: str, exc: BaseException) -> StoreError:
    """One sentence for a failed PostgreSQL connection, naming where and why."""
    parts = urlsplit(url)
    where = _where(url)
    user = parts.username or "the current user"
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return StoreError(
            f"PostgreSQL at {where} rejected the password for user {user!r}",
            hint="check the password in DATABASE_URL",
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return StoreError(f"PostgreSQL at {where} refused user {user!r}: {exc}")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(
            f"PostgreSQL database {parts.path.lstrip('/')!r} does not exist at {where}",
            hint="create it (createdb) or fix DATABASE_URL",
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return StoreError(f"PostgreSQL at {where} did not answer within {CONNECT_TIMEOUT_S:.0f} s")
    if isinstance(exc, OSError):
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return StoreError(f"cannot reach PostgreSQL at {where}: {reason}")
    return StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}")


def _wrap(exc: Exception) -> StoreError:
    return StoreError(f"PostgreSQL error: {exc}")


class _Conn:
    def __init__(self, conn: asyncpg.Connection):
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            status = await self._conn.execute(sql, *args)
        except asyncpg.PostgresError as exc:
            raise _wrap(exc) from exc
        tail = str(status).rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, [tuple(r) for r in rows])
        except asyncpg.PostgresError as exc:
            raise _wrap(exc) from exc

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            records = await self._conn.fetch(sql, *args)
        except asyncpg.PostgresError as exc:
            raise _wrap(exc) from exc
        return [dict(r) for r in records]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        try:
            record = await self._conn.fetchrow(sql, *args)
        except asyncpg.PostgresError as exc:
            raise _wrap(exc) from exc
        return dict(record) if record is not None else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        try:
            return await self._conn.fetchval(sql, *args)
        except asyncpg.PostgresError as exc:
            raise _wrap(exc) from exc


class PostgresStore:
    """A pool of connections to one PostgreSQL database."""

    backend: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, pool: asyncpg.Pool, url: str):
        self._pool = pool
        self.location = redact_url(url)

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(
                url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise connect_error(url, exc) from None
        return cls(pool, url)

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[_Conn]:
        try:
            conn = await self._pool.acquire(timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise StoreError(f"lost PostgreSQL at {self.location}: {exc}") from exc
        try:
            yield _Conn(conn)
        finally:
            await self._pool.release(conn)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._acquire() as conn:
            return await conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._acquire() as conn:
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._acquire() as conn:
            return await conn.fetchval(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queryable]:
        async with self._acquire() as conn, conn._conn.transaction():
            yield conn

    @asynccontextmanager
    async def locked(self, name: str) -> AsyncIterator[Queryable]:
        # A transaction-scoped advisory lock: released by COMMIT or ROLLBACK, never leaked.
        key = zlib.crc32(name.encode()) - 2**31
        async with self.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock($1)", key)
            yield tx

    async def ping(self) -> float:
        started = time.perf_counter()
        await self.fetchval("SELECT 1")
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._pool.close()
