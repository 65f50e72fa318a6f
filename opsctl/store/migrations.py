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

# The ConnectorRegistry (opsctl/connectors/registry.py). A connector without a row is at its
# definition's release_stage; api_clients hold secret references, never secret values.
_REGISTRY = (
    "CREATE TABLE connectors ("
    " id TEXT PRIMARY KEY,"
    " stage TEXT NOT NULL CHECK (stage IN ('experimental', 'beta', 'stable', 'deprecated')),"
    " digest TEXT NOT NULL,"
    " version TEXT NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL,"
    " updated_by TEXT NOT NULL)",
    "CREATE TABLE api_clients ("
    " connector_id TEXT PRIMARY KEY,"
    " kind TEXT NOT NULL CHECK (kind IN ('oauth', 'api_key')),"
    " client_id TEXT,"
    " secret_ref TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL,"
    " registered_at DOUBLE PRECISION NOT NULL,"
    " registered_by TEXT NOT NULL)",
    "CREATE TABLE connections ("
    " id TEXT PRIMARY KEY,"
    " connector_id TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('active', 'needs_reauth')),"
    " status_reason TEXT,"
    " account_label TEXT,"
    " config TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL,"
    " created_by TEXT NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX connections_connector_id ON connections (connector_id)",
)
_AUDIT_COLUMNS = (
    " at DOUBLE PRECISION NOT NULL,"
    " who TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " connector_id TEXT,"
    " subject TEXT,"
    " before_json TEXT,"
    " after_json TEXT"
)
_AUDIT_INDEX = "CREATE INDEX audit_connector_id ON audit (connector_id, id)"


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
    Migration(
        2,
        "cron schedules",
        **same_sql(
            "CREATE TABLE schedules ("
            " name TEXT PRIMARY KEY,"
            " cron TEXT NOT NULL,"
            " kind TEXT NOT NULL,"
            " payload TEXT NOT NULL,"
            " queue TEXT NOT NULL,"
            " enabled INTEGER NOT NULL DEFAULT 1,"
            " created_at DOUBLE PRECISION NOT NULL,"
            " last_occurrence DOUBLE PRECISION,"
            " last_job_id TEXT)"
        ),
    ),
    Migration(
        3,
        "encryption keys",
        **same_sql(
            # Data keys, each wrapped (AES-256-GCM) under the master key named by master_key_id.
            "CREATE TABLE encryption_keys ("
            " id TEXT PRIMARY KEY,"
            " state TEXT NOT NULL CHECK (state IN ('active', 'inactive', 'retired')),"
            " wrapped_key TEXT NOT NULL,"
            " master_key_id TEXT NOT NULL,"
            " created_at DOUBLE PRECISION NOT NULL,"
            " activated_at DOUBLE PRECISION,"
            " deactivated_at DOUBLE PRECISION,"
            " retired_at DOUBLE PRECISION)",
            "CREATE UNIQUE INDEX encryption_keys_one_active ON encryption_keys (state)"
            " WHERE state = 'active'",
        ),
    ),
    Migration(
        4,
        "encrypted credentials",
        **same_sql(
            "CREATE TABLE credentials ("
            " connection_id TEXT NOT NULL,"
            " name TEXT NOT NULL,"
            " ciphertext TEXT NOT NULL,"
            " key_id TEXT NOT NULL REFERENCES encryption_keys (id),"
            " fingerprint TEXT NOT NULL,"
            " row_version BIGINT NOT NULL,"
            " created_at DOUBLE PRECISION NOT NULL,"
            " updated_at DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (connection_id, name))",
            "CREATE INDEX credentials_key_id ON credentials (key_id)",
        ),
    ),
    Migration(
        5,
        "key rotation cursors",
        **same_sql(
            # One re-encryption pass per target key: rows after the cursor are still to visit.
            "CREATE TABLE rotation_state ("
            " target_key_id TEXT PRIMARY KEY,"
            " cursor_connection_id TEXT NOT NULL,"
            " cursor_name TEXT NOT NULL,"
            " moved BIGINT NOT NULL,"
            " failed BIGINT NOT NULL,"
            " passes INTEGER NOT NULL,"
            " started_at DOUBLE PRECISION NOT NULL,"
            " updated_at DOUBLE PRECISION NOT NULL,"
            " finished_at DOUBLE PRECISION)"
        ),
    ),
    Migration(
        6,
        "connector registry",
        sqlite=(
            *_REGISTRY,
            f"CREATE TABLE audit ( id INTEGER PRIMARY KEY AUTOINCREMENT,{_AUDIT_COLUMNS})",
            _AUDIT_INDEX,
        ),
        postgresql=(
            *_REGISTRY,
            "CREATE TABLE audit ("
            " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            f"{_AUDIT_COLUMNS})",
            _AUDIT_INDEX,
        ),
    ),
    Migration(
        7,
        "oauth states and refresh leases",
        **same_sql(
            # Pending authorisations when no Redis is configured: consumed once, short-lived.
            "CREATE TABLE oauth_states ("
            " state_hash TEXT PRIMARY KEY,"
            " connector_id TEXT NOT NULL,"
            " payload TEXT NOT NULL,"
            " expires_at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at)",
            # One token refresh per connection across processes when no Redis is configured.
            "CREATE TABLE oauth_refresh_leases ("
            " connection_id TEXT PRIMARY KEY,"
            " owner TEXT NOT NULL,"
            " expires_at DOUBLE PRECISION NOT NULL)",
        ),
    ),
    Migration(
        8,
        "schedules paused and resumed",
        # When a paused schedule was resumed: occurrences before it are not enqueued.
        **same_sql("ALTER TABLE schedules ADD COLUMN resumed_at DOUBLE PRECISION"),
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
