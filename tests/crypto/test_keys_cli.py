"""``opsctl keys`` as operators run it (the installed command): output, exit codes, one-line
errors, and ``rotate --wait`` following the real daemon."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from opsctl.crypto import Keyring, key_usage, put_credentials
from opsctl.settings import Settings
from opsctl.store import Store
from tests._support import Daemon, run_opsctl

pytestmark = pytest.mark.slow


def _env(settings: Settings) -> dict[str, str]:
    return {
        "OPSCTL_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "OPSCTL_LOG_FORMAT": "json",
    }


def _error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("opsctl: error: ")
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_a_fresh_data_directory_works_out_of_the_box(tmp_path: Path) -> None:
    env = {"OPSCTL_DATA_DIR": str(tmp_path / "data")}
    empty = run_opsctl("keys", "status", env=env, cwd=tmp_path)
    assert empty.returncode == 0 and "no data keys yet" in empty.stdout
    rotated = run_opsctl("keys", "rotate", env=env, cwd=tmp_path)
    assert rotated.returncode == 0 and rotated.stdout.strip() == "k1 is the active key now"
    keyring = tmp_path / "data" / "keyring.json"
    assert keyring.stat().st_mode & 0o777 == 0o600
    status = json.loads(run_opsctl("keys", "status", "--json", env=env, cwd=tmp_path).stdout)
    assert status["active"] == "k1" and status["pending"] == 0
    assert status["master_key"] == f"keyring file {keyring}"

    keyring.chmod(0o644)
    _error(run_opsctl("keys", "rotate", env=env, cwd=tmp_path), 2, "chmod 600")


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        ({"OPSCTL_ENV": "production", "OPSCTL_API_TOKEN": "t" * 32}, "OPSCTL_MASTER_KEY_REF must"),
        ({"OPSCTL_MASTER_KEY_REF": "vault:x"}, "OPSCTL_MASTER_KEY_REF: secret reference"),
        ({"OPSCTL_KEY_MAX_AGE_DAYS": "soon"}, "OPSCTL_KEY_MAX_AGE_DAYS must be a number"),
        ({"OPSCTL_MASTER_KEY_REF": "env:NO_SUCH_VARIABLE"}, "environment variable NO_SUCH"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    tmp_path: Path, variables: dict[str, str], fragment: str
) -> None:
    env = {"OPSCTL_DATA_DIR": str(tmp_path / "data"), **variables}
    _error(run_opsctl("keys", "rotate", env=env, cwd=tmp_path), 2, fragment)
    assert not (tmp_path / "data" / "keyring.json").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    done = run_opsctl("keys", "retire", env={"OPSCTL_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 2 and "Missing argument 'ID'" in done.stderr
    done = run_opsctl("keys", "rotate", "--timeout", "-1", cwd=tmp_path)
    assert done.returncode == 2


async def test_rotate_wait_retire_against_the_daemon(
    store: Store,
    keyring: Keyring,
    store_settings: Settings,
    daemons: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    await put_credentials(store, keyring, [(f"c{i:04d}", "t", f"v{i}") for i in range(3000)])
    env = _env(store_settings)

    def opsctl(*args: str) -> subprocess.CompletedProcess[str]:
        return run_opsctl(*args, env=env, cwd=tmp_path)

    rotated = opsctl("keys", "rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout) == {"active": "k2", "previous": "k1", "pending": 3000}
    _error(opsctl("keys", "retire", "k1"), 1, "data key k1 still encrypts 3000 row(s)")
    _error(opsctl("keys", "retire", "k2"), 1, "data key k2 is the active key")
    _error(opsctl("keys", "retire", "k9"), 1, "data key k9 does not exist")
    timed_out = opsctl("keys", "rotate", "--wait", "--timeout", "0.5")
    _error(timed_out, 1, "timed out after 0.5 s: 3,000 row(s) still on older keys")
    assert "no encryption-rotation daemon is running" in timed_out.stderr
    assert timed_out.stdout.startswith("k3 is the active key now (was k2)")

    table = opsctl("keys", "status")
    assert table.returncode == 0
    assert "3,000 row(s) on older keys" in table.stdout and "active key: k3" in table.stdout

    daemon = daemons("daemon", "encryption-rotation", "--interval", "0.1", env=env)
    waited = opsctl("keys", "rotate", "--wait", "--timeout", "60")
    assert waited.returncode == 0, (waited.stdout, waited.stderr, daemon.output)
    assert waited.stdout.splitlines() == ["k4 is the active key now (was k3)", "every row is on k4"]
    assert await key_usage(store) == {"k4": 3000}
    for key_id in ("k1", "k2", "k3"):
        retired = opsctl("keys", "retire", key_id)
        assert retired.returncode == 0 and retired.stdout.strip() == f"retired data key {key_id}"
    again = opsctl("keys", "retire", "k1", "--json")
    assert json.loads(again.stdout)["changed"] is False
    status = json.loads(opsctl("keys", "status", "--json").stdout)
    assert [(k["id"], k["state"], k["rows"]) for k in status["keys"]] == [
        ("k1", "retired", 0),
        ("k2", "retired", 0),
        ("k3", "retired", 0),
        ("k4", "active", 3000),
    ]
    assert daemon.stop() == 0
