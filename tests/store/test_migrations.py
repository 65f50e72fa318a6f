"""Versioned migrations: applied once, safe from many processes, data kept across upgrades."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from opsctl.errors import MigrationError
from opsctl.settings import Settings
from opsctl.store import (
    MIGRATIONS,
    Migration,
    Store,
    connect,
    migrate,
    migration_status,
    require_current,
)
from tests._support import OPSCTL, clean_env, run_opsctl

V1 = Migration(
    1,
    "notes",
    **{
        "sqlite": ("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",),
        "postgresql": ("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",),
    },
)
V2 = Migration(
    2,
    "notes author",
    **{
        "sqlite": ("ALTER TABLE notes ADD COLUMN author TEXT",),
        "postgresql": ("ALTER TABLE notes ADD COLUMN author TEXT",),
    },
)


async def test_fresh_database_migrates_to_latest_then_is_a_no_op(store: Store) -> None:
    before = await migration_status(store)
    assert before.current == 0 and len(before.pending) == len(MIGRATIONS)
    applied = await migrate(store)
    assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
    assert await migrate(store) == []
    after = await migration_status(store)
    assert after.up_to_date and after.current == MIGRATIONS[-1].version
    await require_current(store)


async def test_database_left_at_an_older_migration_upgrades_and_keeps_data(store: Store) -> None:
    await migrate(store, [V1])
    await store.execute("INSERT INTO notes (id, body) VALUES (1, 'keep me')")
    with pytest.raises(MigrationError, match=r"1 migration\(s\) behind.*opsctl db migrate"):
        await require_current(store, [V1, V2])
    assert [m.version for m in await migrate(store, [V1, V2])] == [2]
    rows = await store.fetch("SELECT id, body, author FROM notes")
    assert rows == [{"id": 1, "body": "keep me", "author": None}]


async def test_database_newer_than_this_release_is_refused(store: Store) -> None:
    await migrate(store, [V1, V2])
    with pytest.raises(MigrationError, match="newer than this opsctl knows"):
        await migrate(store, [V1])
    with pytest.raises(MigrationError, match="upgrade opsctl"):
        await require_current(store, [V1])


async def test_failed_migration_rolls_back_whole(store: Store) -> None:
    broken = Migration(
        2,
        "broken",
        **{
            "sqlite": ("ALTER TABLE notes ADD COLUMN x TEXT", "SELECT * FROM nope"),
            "postgresql": ("ALTER TABLE notes ADD COLUMN x TEXT", "SELECT * FROM nope"),
        },
    )
    await migrate(store, [V1])
    with pytest.raises(Exception, match="nope"):
        await migrate(store, [V1, broken])
    status = await migration_status(store, [V1, broken])
    assert status.current == 1
    assert [r for r in await store.fetch("SELECT * FROM notes")] == []
    await migrate(store, [V1, V2])  # the column of the broken one was rolled back too


async def test_out_of_order_list_is_rejected(store: Store) -> None:
    with pytest.raises(MigrationError, match="out of order"):
        await migrate(store, [V2])


async def test_concurrent_migrations_in_one_process(store_settings: Settings) -> None:
    stores = [await connect(store_settings) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(s) for s in stores))
    finally:
        for s in stores:
            await s.close()
    assert sorted(len(r) for r in results) == [0, 0, 0, len(MIGRATIONS)]


def test_two_processes_starting_at_once_apply_each_migration_once(
    store_settings: Settings, tmp_path: Path
) -> None:
    env = clean_env(
        {
            "DATABASE_URL": store_settings.database_url,
            "OPSCTL_DATA_DIR": str(store_settings.data_dir),
        }
    )
    procs = [
        subprocess.Popen(
            [OPSCTL, "db", "migrate", "--json"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    import json

    applied = sorted(len(json.loads(out)["applied"]) for out, _ in outputs)
    assert applied == [0, 0, len(MIGRATIONS)]

    async def ledger() -> list[int]:
        s = await connect(store_settings)
        try:
            return [r["version"] for r in await s.fetch("SELECT version FROM schema_migrations")]
        finally:
            await s.close()

    assert sorted(asyncio.run(ledger())) == [m.version for m in MIGRATIONS]


def test_db_status_exits_1_when_pending_and_0_when_current(
    store_settings: Settings, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": store_settings.database_url,
        "OPSCTL_DATA_DIR": str(store_settings.data_dir),
    }
    pending = run_opsctl("db", "status", env=env, cwd=tmp_path)
    assert pending.returncode == 1
    assert "pending" in pending.stdout
    done = run_opsctl("db", "migrate", env=env, cwd=tmp_path)
    assert done.returncode == 0 and "migrated to version" in done.stdout
    again = run_opsctl("db", "migrate", env=env, cwd=tmp_path)
    assert "already at version" in again.stdout
    assert run_opsctl("db", "status", env=env, cwd=tmp_path).returncode == 0
