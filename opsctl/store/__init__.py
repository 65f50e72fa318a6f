"""Persistence: one async interface over SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opsctl.settings import Settings
from opsctl.store.base import Queryable, Row, Store
from opsctl.store.migrations import (
    MIGRATIONS,
    Migration,
    MigrationStatus,
    migrate,
    migration_status,
    require_current,
)

__all__ = [
    "MIGRATIONS",
    "Migration",
    "MigrationStatus",
    "Queryable",
    "Row",
    "Store",
    "connect",
    "migrate",
    "migration_status",
    "open_store",
    "require_current",
]


async def connect(settings: Settings) -> Store:
    """Open the store that ``DATABASE_URL`` names; the caller closes it."""
    if settings.database_backend == "sqlite":
        from opsctl.store._sqlite import SQLiteStore

        return await SQLiteStore.open(settings.sqlite_path)
    from opsctl.store._postgres import PostgresStore

    return await PostgresStore.open(settings.database_url)


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The store for the block's duration, closed after it."""
    store = await connect(settings)
    try:
        yield store
    finally:
        await store.close()
