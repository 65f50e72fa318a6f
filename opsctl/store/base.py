"""The storage interface every backend implements, and the SQL placeholder convention.

SQL is written once with PostgreSQL's ``$1, $2`` placeholders; the SQLite backend rewrites them
to SQLite's numbered ``?1, ?2``. Rows come back as plain dicts so callers never see a driver
type. Timestamps are stored as float epoch seconds, which both engines handle alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Row = dict[str, Any]


class Queryable(Protocol):
    """What a caller can do with a store or with an open transaction."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it changed."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of arguments."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All rows of a query."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None."""


class Store(Queryable, Protocol):
    """A connection pool over one database."""

    backend: Literal["sqlite", "postgresql"]
    location: str
    """Where the data lives, safe to print (a file path, or a URL without its password)."""

    def transaction(self) -> AbstractAsyncContextManager[Queryable]:
        """A unit of work: committed when the block ends, rolled back if it raises."""

    def locked(self, name: str) -> AbstractAsyncContextManager[Queryable]:
        """A transaction that also holds a named lock across processes until it ends."""

    async def ping(self) -> float:
        """Round-trip a trivial query; return the seconds it took."""

    async def close(self) -> None:
        """Release every connection."""
