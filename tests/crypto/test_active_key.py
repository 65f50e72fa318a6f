"""Proving that this process's master key unwraps the active data key (readiness, ``opsctl
keys status``), and what a process with another master key does on a shared database: the check
fails with one sentence, the rotation daemon touches nothing, nothing is ever written."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opsctl.crypto import (
    Keyring,
    MasterKeyError,
    check_active_key,
    key_usage,
    put_credential,
    rotate_key,
)
from opsctl.crypto.master import KeyringFile
from opsctl.health import check_keys
from opsctl.settings import Settings
from opsctl.store import Store, migrate
from tests._support import Daemon, run_opsctl
from tests.crypto.conftest import snapshot


def _other_data_dir(settings: Settings, tmp_path: Path) -> Settings:
    """The same database seen by a process with a data directory (a dev keyring) of its own."""
    return settings.with_overrides(data_dir=tmp_path / "other")


async def test_the_active_key_is_proven_to_unwrap(
    store: Store, keyring: Keyring, store_settings: Settings
) -> None:
    proof = await check_active_key(store, store_settings)
    assert proof.active is not None and proof.active.id == "k1"
    assert proof.masters == 1 and proof.source.startswith("keyring file ")
    result = await check_keys(store_settings, store)
    assert result.status == "pass", result.reason
    assert result.reason.startswith("active key k1, 0.0 days old, unwraps under this master key")
    assert result.details["activeKeyUnwraps"] is True


async def test_another_keyring_file_cannot_unwrap_and_says_so(
    store: Store, keyring: Keyring, store_settings: Settings, tmp_path: Path
) -> None:
    await put_credential(store, keyring, "github", "token", "s3cret-value")
    before = await snapshot(store)
    other = _other_data_dir(store_settings, tmp_path)
    # No keyring file there: the check neither makes one nor passes.
    with pytest.raises(MasterKeyError, match="does not exist, but the database holds data keys"):
        await check_active_key(store, other)
    assert not (other.data_dir / "keyring.json").exists()
    missing = await check_keys(other, store)
    assert missing.status == "fail" and "does not exist" in missing.reason

    # A valid keyring file holding another master key.
    foreign = KeyringFile(other.data_dir / "keyring.json")
    [theirs] = await foreign.master_keys()
    with pytest.raises(MasterKeyError) as caught:
        await check_active_key(store, other)
    assert caught.value.exit_code == 2
    assert caught.value.message == (
        f"the active data key k1 was wrapped by another master key ({keyring.master.id}): this"
        f" process's keyring file {foreign.path}, master key {theirs.id}, cannot unwrap it;"
        " every process must share one master key"
    )
    result = await check_keys(other, store)
    assert result.status == "fail"
    assert result.reason == caught.value.message
    assert await snapshot(store) == before  # a check writes nothing


async def test_an_altered_wrapped_key_fails_the_check(
    store: Store, keyring: Keyring, store_settings: Settings
) -> None:
    wrapped = await store.fetchval("SELECT wrapped_key FROM encryption_keys WHERE id = 'k1'")
    flipped = wrapped[:-2] + ("A" if wrapped[-2] != "A" else "B") + wrapped[-1]
    await store.execute("UPDATE encryption_keys SET wrapped_key = $1", flipped)
    result = await check_keys(store_settings, store)
    assert result.status == "fail"
    assert result.reason.startswith("the active data key k1 does not unwrap under master key")


async def test_no_data_key_yet_is_a_warning_and_makes_no_file(
    store: Store, store_settings: Settings
) -> None:
    await migrate(store)
    result = await check_keys(store_settings, store)
    assert result.status == "warn" and result.reason.startswith("no data key yet")
    assert not (store_settings.data_dir / "keyring.json").exists()


async def test_a_master_key_reference_from_the_env_provider(
    store: Store, store_settings: Settings
) -> None:
    await migrate(store)
    first = store_settings.with_overrides(
        master_key_ref="env:MASTER_A", environ={"MASTER_A": "11" * 32, "MASTER_B": "22" * 32}
    )
    from opsctl.crypto import open_keyring

    opened = await open_keyring(store, first)
    await opened.source.close()
    assert (await check_keys(first, store)).status == "pass"
    second = first.with_overrides(master_key_ref="env:MASTER_B")
    result = await check_keys(second, store)
    assert result.status == "fail"
    assert "this process's OPSCTL_MASTER_KEY_REF (env:MASTER_B)" in result.reason
    assert result.reason.endswith("cannot unwrap it; every process must share one master key")
    unset = first.with_overrides(master_key_ref="env:NO_SUCH_VARIABLE")
    result = await check_keys(unset, store)
    assert result.status == "fail"
    assert result.reason.startswith("cannot read the master key from OPSCTL_MASTER_KEY_REF")
    assert "11" * 32 not in str(result.details) + result.reason


def _env(settings: Settings, data_dir: Path | None = None) -> dict[str, str]:
    return {
        "OPSCTL_DATA_DIR": str(data_dir or settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "OPSCTL_LOG_FORMAT": "json",
    }


@pytest.mark.slow
async def test_keys_status_exits_1_when_this_master_key_cannot_unwrap(
    store: Store, keyring: Keyring, store_settings: Settings, tmp_path: Path
) -> None:
    ours = await asyncio.to_thread(
        run_opsctl, "keys", "status", "--json", env=_env(store_settings), cwd=tmp_path
    )
    assert ours.returncode == 0, ours.stderr
    assert json.loads(ours.stdout)["active_key_unwraps"] is True

    other = tmp_path / "other"
    await KeyringFile(other / "keyring.json").master_keys()
    env = _env(store_settings, other)
    table = await asyncio.to_thread(run_opsctl, "keys", "status", env=env, cwd=tmp_path)
    assert table.returncode == 1
    assert "active key: k1 (does not unwrap under this master key)" in table.stdout
    [line] = table.stderr.strip().splitlines()
    assert line.startswith("opsctl: error: the active data key k1 was wrapped by another master")
    assert line.endswith("every process must share one master key")
    as_json = await asyncio.to_thread(run_opsctl, "keys", "status", "--json", env=env, cwd=tmp_path)
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["active_key_unwraps"] is False and data["active"] == "k1"
    assert data["problem"].startswith("the active data key k1 was wrapped by another master key")


async def _wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_the_rotation_daemon_touches_nothing_under_a_foreign_active_key(
    store: Store,
    keyring: Keyring,
    store_settings: Settings,
    daemons: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    """A process with another master key made the active key: this daemon's master key cannot
    unwrap it, so it must neither rewrap, rotate nor re-encrypt: one error line, and it waits."""
    for i in range(20):
        await put_credential(store, keyring, f"conn-{i}", "token", f"value-{i}")
    daemon = daemons("daemon", "encryption-rotation", "--interval", "0.1", env=_env(store_settings))
    await _wait_for(
        lambda: "encryption-rotation started" in daemon.output, 30, "the daemon's start"
    )
    foreign_file = KeyringFile(tmp_path / "foreign" / "keyring.json")
    foreign = Keyring(foreign_file, await foreign_file.master_keys())
    rotated = await rotate_key(store, foreign)  # k2, active, wrapped under the foreign key
    assert rotated is not None and rotated.key_id == "k2"
    before = await snapshot(store)
    await _wait_for(
        lambda: "rotating, rewrapping and re-encrypting nothing" in daemon.output,
        30,
        "the daemon's error line",
    )
    assert daemon.proc.poll() is None, daemon.output  # it waits for the keys to agree
    assert await snapshot(store) == before
    assert await key_usage(store) == {"k1": 20}
    lines = [json.loads(line) for line in daemon.output.splitlines() if line.startswith("{")]
    [error] = [r for r in lines if "re-encrypting nothing" in r["msg"]]
    assert error["level"] == "error"
    assert error["msg"].startswith("data key k2 was wrapped by another master key")
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(15) == 0, daemon.output
    assert await snapshot(store) == before
