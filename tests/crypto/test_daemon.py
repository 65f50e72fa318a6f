"""The encryption-rotation daemon as a real process: ``kill -9`` at random points during a
rotation while a writer updates random rows, restarts, SIGTERM draining; on SQLite and
PostgreSQL. Afterwards every row decrypts, holds its latest value, and is on the new key."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from opsctl.crypto import (
    Keyring,
    get_credential,
    key_usage,
    open_keyring,
    put_credential,
    put_credentials,
    retire_key,
    rotate_key,
)
from opsctl.crypto.credentials import decrypt_row
from opsctl.crypto.master import KeyringFile
from opsctl.settings import Settings
from opsctl.store import Store, connect
from tests._support import Daemon

pytestmark = pytest.mark.slow

ROWS = {"postgresql": 20_000, "sqlite": 5_000}
DaemonFactory = Callable[..., Daemon]


def _env(settings: Settings) -> dict[str, str]:
    return {
        "OPSCTL_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "OPSCTL_LOG_FORMAT": "json",
    }


def _pk(i: int) -> tuple[str, str]:
    return f"conn-{i:05d}", "token"


async def _fill(store: Store, keyring: Keyring, count: int) -> dict[tuple[str, str], str]:
    values = {_pk(i): f"secret-{i}-{os.urandom(6).hex()}" for i in range(count)}
    items = [(c, n, v) for (c, n), v in values.items()]
    for start in range(0, count, 5000):
        await put_credentials(store, keyring, items[start : start + 5000])
    return values


async def _moved(store: Store, target: str) -> tuple[int, bool]:
    row = await store.fetchrow(
        "SELECT moved, finished_at FROM rotation_state WHERE target_key_id = $1", target
    )
    return (0, False) if row is None else (int(row["moved"]), row["finished_at"] is not None)


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        assert time.monotonic() < deadline, f"{what} not reached within {within} s"
        await asyncio.sleep(0.002)


def _logs(directory: Path) -> str:
    return "".join(p.read_text() for p in sorted(directory.glob("rotation-*.log")))


async def _started(daemon: Daemon) -> None:
    deadline = time.monotonic() + 30
    while "encryption-rotation started" not in daemon.output:
        assert daemon.proc.poll() is None, daemon.output
        assert time.monotonic() < deadline, daemon.output
        await asyncio.sleep(0.02)


def _kill(daemon: Daemon) -> None:
    os.kill(daemon.proc.pid, signal.SIGKILL)
    assert daemon.proc.wait(10) == -signal.SIGKILL


async def test_kill_9_at_random_points_loses_nothing_and_writes_win(
    store: Store,
    keyring: Keyring,
    store_settings: Settings,
    daemons: DaemonFactory,
    tmp_path: Path,
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    count = ROWS[store.backend]
    expected = await _fill(store, keyring, count)
    writer_keyring = await open_keyring(store, store_settings)  # goes stale at the rotation
    stop_writing = asyncio.Event()
    rotation_done = asyncio.Event()
    writes = 0

    async def writer() -> None:
        nonlocal writes
        while not stop_writing.is_set():
            pk = _pk(rng.randrange(count))
            value = f"written-{writes}-{os.urandom(4).hex()}"
            after_rotation = rotation_done.is_set()
            info = await put_credential(store, writer_keyring, *pk, value)
            assert info.key_id == "k2" or not after_rotation  # never the old key once rotated
            expected[pk] = value
            writes += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(writer())  # writes under k1, then across the rotation
    await asyncio.sleep(0.2)
    rotated = await rotate_key(store, keyring)
    assert rotated is not None and (rotated.previous_id, rotated.key_id) == ("k1", "k2")
    rotation_done.set()
    env = _env(store_settings)
    batch = "200" if store.backend == "postgresql" else "50"
    args = ("daemon", "encryption-rotation", "--batch", batch, "--interval", "0.1")
    # Progress is watched on a connection of its own, never queued behind the writer's.
    watch = await connect(store_settings)
    kills = []
    try:
        # 1: at a random delay after start (start-up or early in the pass).
        first = daemons(*args, env=env, log_name="rotation-1.log")
        delay = rng.uniform(0.3, 1.2)
        await asyncio.sleep(delay)
        _kill(first)
        kills.append(("after", round(delay, 3), (await _moved(watch, "k2"))[0]))
        # 2 and 3: once a random share of the rows moved, after a random few milliseconds.
        for n, share in enumerate(sorted(rng.uniform(0.1, 0.9) for _ in range(2)), start=2):
            daemon = daemons(*args, env=env, log_name=f"rotation-{n}.log")
            floor = (await _moved(watch, "k2"))[0] + int(share * count / 3)

            async def progressed(floor: int = floor) -> bool:
                moved, finished = await _moved(watch, "k2")
                return moved >= floor or finished

            await _until(progressed, 30, f"kill {n}: {floor} rows moved (seed {seed})")
            await asyncio.sleep(rng.uniform(0, 0.03))
            _kill(daemon)
            kills.append(("moved", floor, (await _moved(watch, "k2"))[0]))

        last = daemons(*args, env=env, log_name="rotation-final.log")
        await _started(last)

        async def all_moved() -> bool:
            return (await key_usage(store)).keys() == {"k2"}

        await _until(all_moved, 60, f"every row on k2 (seed {seed}, kills {kills})")
        # Nothing is left on k1, so it retires; writes go on, never under a retired key.
        key, _ = await retire_key(store, "k1")
        assert key.state == "retired"
        await asyncio.sleep(0.3)
    finally:
        stop_writing.set()
        await asyncio.wait_for(task, 10)
        await writer_keyring.source.close()
        await watch.close()
    print(f"seed {seed}; kills (when, at, rows moved then): {kills}; {writes} writes")
    assert last.stop() == 0, last.output
    assert writes > 50, writes

    assert await key_usage(store) == {"k2": count}
    rows = await store.fetch("SELECT connection_id, name, ciphertext FROM credentials")
    values = {
        (r["connection_id"], r["name"]): decrypt_row(
            keyring, r["connection_id"], r["name"], r["ciphertext"]
        )
        for r in rows
    }
    lost = {pk for pk, value in expected.items() if values[pk] != value}
    assert not lost, f"{len(lost)} rows lost their latest value (seed {seed}, kills {kills})"

    logs = _logs(tmp_path)
    assert "every row is on k2" in logs
    samples = rng.sample(sorted(expected.values()), 200)
    assert not [v for v in samples if v in logs], "a credential value reached a log line"


async def test_sigterm_lets_the_batch_commit_then_a_restart_resumes(
    store: Store, keyring: Keyring, store_settings: Settings, daemons: DaemonFactory
) -> None:
    expected = await _fill(store, keyring, 4000)
    await rotate_key(store, keyring)
    args = ("daemon", "encryption-rotation", "--batch", "20", "--interval", "0.1")
    first = daemons(*args, env=_env(store_settings), log_name="rotation-1.log")

    async def started() -> bool:
        return (await _moved(store, "k2"))[0] > 0

    await _until(started, 30, "the first batch")
    first.signal(signal.SIGTERM)
    assert first.proc.wait(10) == 0, first.output
    moved, finished = await _moved(store, "k2")
    assert not finished and 0 < moved < 4000
    assert (await key_usage(store)).get("k2") == moved  # whole batches only
    assert "a restart resumes" in first.output

    second = daemons(*args, env=_env(store_settings), log_name="rotation-2.log")
    await _started(second)

    async def done() -> bool:
        return (await key_usage(store)).keys() == {"k2"}

    await _until(done, 60, "every row on k2")
    assert second.stop() == 0
    assert f"resuming the re-encryption pass to k2 after {moved} row(s)" in second.output
    sample = random.sample(sorted(expected), 100)
    for pk in sample:
        assert await get_credential(store, keyring, *pk) == expected[pk]


async def test_the_daemon_refuses_a_wrong_or_missing_master_key(
    store: Store, keyring: Keyring, store_settings: Settings, daemons: DaemonFactory
) -> None:
    await put_credential(store, keyring, "c", "n", "v")
    before = await store.fetch("SELECT * FROM encryption_keys")
    keyring_file = store_settings.data_dir / "keyring.json"
    saved = keyring_file.with_suffix(".saved")
    keyring_file.rename(saved)
    other = KeyringFile(keyring_file)
    await other.master_keys()  # a valid file holding another master key
    for problem in ("was wrapped by another master key", "does not exist"):
        daemon = daemons("daemon", "encryption-rotation", env=_env(store_settings))
        daemon.proc.wait(30)
        assert daemon.proc.returncode == 2, daemon.output
        last = daemon.output.strip().splitlines()[-1]
        assert last.startswith("opsctl daemon encryption-rotation: error:") and problem in last
        keyring_file.unlink(missing_ok=True)
    assert not keyring_file.exists()  # a missing master key is not replaced by a new one
    assert await store.fetch("SELECT * FROM encryption_keys") == before
    assert await key_usage(store) == {"k1": 1}
