"""The store interface behaves the same on SQLite and PostgreSQL (real servers)."""

from __future__ import annotations

import asyncio

import pytest

from opsctl.errors import StoreError
from opsctl.settings import Settings
from opsctl.store import Store, connect, migrate


async def _items(store: Store) -> None:
    await store.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, weight DOUBLE PRECISION)"
    )


async def test_round_trip_with_dollar_placeholders(store: Store) -> None:
    await _items(store)
    assert await store.execute("INSERT INTO items VALUES ($1, $2, $3)", 1, "alpha", 1.5) == 1
    await store.executemany(
        "INSERT INTO items VALUES ($1, $2, $3)", [(2, "beta", 2.0), (3, "gamma", None)]
    )
    rows = await store.fetch("SELECT id, name, weight FROM items WHERE id >= $1 ORDER BY id", 2)
    assert rows == [
        {"id": 2, "name": "beta", "weight": 2.0},
        {"id": 3, "name": "gamma", "weight": None},
    ]
    assert await store.fetchrow("SELECT name FROM items WHERE id = $1", 1) == {"name": "alpha"}
    assert await store.fetchrow("SELECT name FROM items WHERE id = $1", 99) is None
    assert await store.fetchval("SELECT count(*) FROM items") == 3
    # A placeholder reused twice and a literal dollar inside a string both survive.
    assert await store.fetchval("SELECT $1 || '-' || $1 || ' costs $5'", "x") == "x-x costs $5"
    assert await store.execute("UPDATE items SET weight = $1 WHERE weight IS NULL", 0.5) == 1


async def test_transaction_commits_or_rolls_back(store: Store) -> None:
    await _items(store)
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO items VALUES (1, 'kept', 0)")
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO items VALUES (2, 'dropped', 0)")
            raise RuntimeError("boom")
    assert [r["name"] for r in await store.fetch("SELECT name FROM items")] == ["kept"]
    # The store is usable after a rollback.
    await store.execute("INSERT INTO items VALUES (3, 'after', 0)")
    assert await store.fetchval("SELECT count(*) FROM items") == 2


async def test_sql_error_is_a_store_error_and_changes_nothing(store: Store) -> None:
    await _items(store)
    await store.execute("INSERT INTO items VALUES (1, 'one', 0)")
    with pytest.raises(StoreError):
        await store.execute("INSERT INTO items VALUES (1, 'duplicate', 0)")
    with pytest.raises(StoreError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO items VALUES (2, 'two', 0)")
            await tx.execute("INSERT INTO nowhere VALUES (1)")
    assert await store.fetchval("SELECT count(*) FROM items") == 1


async def test_ping_and_location(store: Store, store_settings: Settings) -> None:
    assert 0 <= await store.ping() < 5
    assert store.backend == store_settings.database_backend
    assert "***" not in store.location or store.backend == "postgresql"


async def test_named_lock_serialises_two_stores(store_settings: Settings) -> None:
    """Two connections (as two processes would) never hold the same named lock at once."""
    first, second = await connect(store_settings), await connect(store_settings)
    inside: list[str] = []
    overlap = False

    async def critical(store: Store, name: str) -> None:
        nonlocal overlap
        async with store.locked("test-lock"):
            inside.append(name)
            overlap = overlap or len(inside) > 1
            await asyncio.sleep(0.15)
            inside.remove(name)

    try:
        await asyncio.gather(critical(first, "a"), critical(second, "b"))
    finally:
        await first.close()
        await second.close()
    assert not overlap


async def test_meta_records_an_instance_id(store: Store) -> None:
    await migrate(store)
    value = await store.fetchval("SELECT value FROM meta WHERE key = 'instance_id'")
    assert isinstance(value, str) and len(value) == 32
