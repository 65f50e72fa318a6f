"""Versioned schema migrations, applied under a cross-process lock.

Each migration has one script per engine. ``migrate`` takes the store's named lock, reads the
applied versions inside the same transaction, and applies what is missing, so two processes
starting at once apply each migration exactly once: the second waits, then finds nothing to do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from opsctl.errors import MigrationError
from opsctl.store.base import Queryable, Store

LOCK_NAME = "opsctl:migrate"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, backend: str) -> tuple[str, ...]:
        return self.sqlite if backend == "sqlite" else self.postgresql


def same_sql(*statements: str) -> dict[str, tuple[str, ...]]:
    """Keyword arguments for a :class:`Migration` whose SQL is the same on both engines."""
    return {"sqlite": statements, "postgresql": statements}


_META = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL)"
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "instance metadata",
        sqlite=(
            _META,
            "INSERT INTO meta VALUES ('instance_id', lower(hex(randomblob(16))),"
            " CAST(strftime('%s', 'now') AS REAL))",
        ),
        postgresql=(
            _META,
            "INSERT INTO meta VALUES ('instance_id',"
            " md5(random()::text || clock_timestamp()::text), extract(epoch FROM now()))",
        ),
    ),
)


@dataclass(frozen=True)
class MigrationStatus:
    current: int
    latest: int
    pending: tuple[Migration, ...]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and self.current == self.latest


_CREATE_LEDGER = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


async def _has_ledger(db: Queryable, backend: str) -> bool:
    if backend == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    else:
        sql = (
            "SELECT 1 FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename = 'schema_migrations'"
        )
    return bool(await db.fetchval(sql))


def _check_sequence(migrations: Sequence[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration list is out of order at {migration.version} (expected {expected})"
            )


async def _status(db: Queryable, backend: str, migrations: Sequence[Migration]) -> MigrationStatus:
    _check_sequence(migrations)
    applied: set[int] = set()
    if await _has_ledger(db, backend):
        applied = {r["version"] for r in await db.fetch("SELECT version FROM schema_migrations")}
    latest = migrations[-1].version if migrations else 0
    current = max(applied, default=0)
    pending = tuple(m for m in migrations if m.version not in applied)
    return MigrationStatus(current=current, latest=latest, pending=pending)


def _too_new(status: MigrationStatus) -> MigrationError:
    return MigrationError(
        f"the database schema is at version {status.current}, newer than this opsctl "
        f"knows (up to {status.latest})",
        hint="upgrade opsctl to the release that migrated this database",
    )


async def migration_status(
    store: Store, migrations: Sequence[Migration] = MIGRATIONS
) -> MigrationStatus:
    """Which migrations the database has and which it lacks."""
    return await _status(store, store.backend, migrations)


async def migrate(store: Store, migrations: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
    """Apply every pending migration; return those applied (empty when already current)."""
    async with store.locked(LOCK_NAME) as tx:
        await tx.execute(_CREATE_LEDGER)
        status = await _status(tx, store.backend, migrations)
        if status.current > status.latest:
            raise _too_new(status)
        for migration in status.pending:
            for statement in migration.statements(store.backend):
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                time.time(),
            )
    return list(status.pending)


async def require_current(store: Store, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Raise :class:`MigrationError` unless the schema is exactly at the latest version."""
    status = await migration_status(store, migrations)
    if status.current > status.latest:
        raise _too_new(status)
    if status.pending:
        raise MigrationError(
            f"the database schema is at version {status.current}, "
            f"{len(status.pending)} migration(s) behind (latest {status.latest})",
            hint="run: opsctl db migrate",
        )
