"""Key rotation in one process, on SQLite and PostgreSQL: the re-encryption batches, their
cursor and compare-and-set, retirement rules, and the daemon's factory (age, heartbeat)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from daemons.encryption_rotation import ROLE, EncryptionRotation
from opsctl.crypto import (
    KeyInUse,
    KeyNotFound,
    Keyring,
    get_credential,
    key_status,
    key_usage,
    put_credential,
    put_credentials,
    retire_key,
    rotate_key,
)
from opsctl.crypto.credentials import credential_binding
from opsctl.crypto.rotation import Reencryptor, load_pass
from opsctl.queue import open_queue
from opsctl.settings import Settings
from opsctl.store import Store


async def _values(store: Store, keyring: Keyring) -> dict[tuple[str, str], str]:
    rows = await store.fetch("SELECT connection_id, name FROM credentials")
    return {
        (r["connection_id"], r["name"]): await get_credential(
            store, keyring, r["connection_id"], r["name"]
        )
        for r in rows
    }


async def test_batches_move_every_row_and_save_their_cursor(store: Store, keyring: Keyring) -> None:
    await put_credentials(store, keyring, [(f"c{i:03d}", "token", f"v{i}") for i in range(250)])
    await rotate_key(store, keyring)
    await put_credentials(store, keyring, [(f"c{i:03d}", "refresh", f"r{i}") for i in range(50)])
    await rotate_key(store, keyring)
    assert await key_usage(store) == {"k1": 250, "k2": 50}
    before = await _values(store, keyring)

    reencryptor = Reencryptor(store, keyring, batch=100)
    first = await reencryptor.run_batch()
    assert (first.target, first.moved, first.done) == ("k3", 100, False)
    saved = await load_pass(store, "k3")
    assert saved is not None and saved.moved == 100 and saved.cursor == ("c049", "token")
    results = [first]
    while not results[-1].done:
        results.append(await reencryptor.run_batch())
    assert sum(r.moved for r in results) == 300
    assert sum(r.moved_from.get("k1", 0) for r in results) == 250
    assert await key_usage(store) == {"k3": 300}
    assert await _values(store, keyring) == before
    finished = await load_pass(store, "k3")
    assert finished is not None and finished.finished and finished.moved == 300
    assert (await reencryptor.run_batch()).done  # a finished pass does nothing more


async def test_a_row_changed_since_read_keeps_the_writers_value(
    store: Store, keyring: Keyring
) -> None:
    info = await put_credential(store, keyring, "c", "n", "old")
    await rotate_key(store, keyring)
    reencryptor = Reencryptor(store, keyring)
    stale = keyring.encrypt(b"old", credential_binding("c", "n"), key_id="k2")
    await put_credential(store, keyring, "c", "n", "new")  # version 2, already on k2
    async with store.transaction() as tx:
        moved = await reencryptor._compare_and_set(tx, [("c", "n", info.version, stale)], "k2")
    assert moved == []
    assert await get_credential(store, keyring, "c", "n") == "new"


async def test_a_pass_for_a_replaced_key_stops(store: Store, keyring: Keyring) -> None:
    await put_credentials(store, keyring, [(f"c{i}", "t", "v") for i in range(20)])
    await rotate_key(store, keyring)
    reencryptor = Reencryptor(store, keyring, batch=5)
    assert (await reencryptor.run_batch()).moved == 5
    stale_view = Keyring(keyring.source, keyring.masters)
    await stale_view.refresh(store)
    await rotate_key(store, keyring)  # k3 while the pass to k2 was under way
    assert (await Reencryptor(store, stale_view, batch=5).run_batch()).stale
    results = [await reencryptor.run_batch()]
    while not results[-1].done:
        results.append(await reencryptor.run_batch())
    assert await key_usage(store) == {"k3": 20}


async def test_a_row_that_does_not_decrypt_is_left_and_blocks_retirement(
    store: Store, keyring: Keyring
) -> None:
    await put_credentials(store, keyring, [(f"c{i}", "t", "v") for i in range(10)])
    ciphertext = await store.fetchval(
        "SELECT ciphertext FROM credentials WHERE connection_id = 'c3'"
    )
    await store.execute(
        "UPDATE credentials SET ciphertext = $1 WHERE connection_id = 'c4'", ciphertext
    )
    await rotate_key(store, keyring)
    result = await Reencryptor(store, keyring).run_batch()
    assert (result.moved, result.failed, result.done) == (9, 1, True)
    assert await key_usage(store) == {"k1": 1, "k2": 9}
    with pytest.raises(KeyInUse, match="data key k1 still encrypts 1 row"):
        await retire_key(store, "k1")


async def test_retire_rules(store: Store, keyring: Keyring) -> None:
    await put_credential(store, keyring, "c", "n", "v")
    with pytest.raises(KeyInUse, match="k1 is the active key") as caught:
        await retire_key(store, "k1")
    assert caught.value.exit_code == 1
    with pytest.raises(KeyNotFound, match="data key k7 does not exist"):
        await retire_key(store, "k7")
    await rotate_key(store, keyring)
    with pytest.raises(KeyInUse, match="still encrypts 1 row"):
        await retire_key(store, "k1")
    while not (await Reencryptor(store, keyring).run_batch()).done:
        pass
    key, changed = await retire_key(store, "k1")
    assert (key.state, changed) == ("retired", True)
    assert (await retire_key(store, "k1"))[1] is False
    status = await key_status(store)
    assert status["active"] == "k2" and status["pending"] == 0
    assert [k["state"] for k in status["keys"]] == ["retired", "active"]
    # A retired key still decrypts a row restored from a backup; the daemon would move it.
    assert await get_credential(store, keyring, "c", "n") == "v"


async def test_the_daemon_rotates_a_key_past_its_age_and_reports_progress(
    store: Store, keyring: Keyring, store_settings: Settings
) -> None:
    await put_credentials(store, keyring, [(f"c{i:04d}", "t", f"v{i}") for i in range(1200)])
    daemon = EncryptionRotation(store_settings, batch=100, interval_s=0.05, max_age_s=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        deadline = time.monotonic() + 20
        while daemon.active_key != "k2":
            assert time.monotonic() < deadline and not task.done(), daemon.active_key
            await asyncio.sleep(0.01)
        daemon.max_age_s = 3600.0  # no third key while the test looks
        while (await key_usage(store)).keys() != {"k2"}:
            assert time.monotonic() < deadline, await key_usage(store)
            assert not task.done(), task
            await asyncio.sleep(0.05)
        async with open_queue(store_settings) as queue:
            beats = [b for b in await queue.heartbeats(ttl_s=15) if b.heartbeat.role == ROLE]
        assert len(beats) == 1 and beats[0].live
        await asyncio.sleep(0.2)
        extra = daemon.activity().extra
        assert extra["active_key"] == "k2" and extra["pending"] == 0
        assert extra["rows_per_key"] == {"k2": 1200}
        assert daemon.moved == 1200
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    rows = await store.fetch("SELECT id, state FROM encryption_keys ORDER BY id")
    assert [r["id"] for r in rows][:2] == ["k1", "k2"]
