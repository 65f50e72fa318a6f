"""``opsctl deploy-gate`` from the command line: usage errors, help, the token's guard, and a
passing gate on Redis whose verdict is lost when stdout cannot take it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from opsctl.cli import main
from opsctl.errors import UsageError
from opsctl.gate import GateOptions
from tests._support import Daemon, clean_env, free_port, run_opsctl, run_opsctl_to_full_disk
from tests.conftest import SettingsFactory
from tests.gate.conftest import add_worker_heartbeat


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "3601"], "--timeout"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "abc"], "--timeout"),
        (["--interval=0.01"], "--interval"),
        (["--interval", "-1"], "--interval"),
        (["--url"], "--url"),
        (["--bogus"], "--bogus"),
        (["extra"], "extra"),
        (["-qq", "--timeout"], "--timeout"),
    ],
)
def test_usage_errors_are_exit_2_naming_the_option(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    ran = run_opsctl("deploy-gate", *args, cwd=tmp_path)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert needle in ran.stderr
    assert "Traceback" not in ran.stderr


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("", "http(s) URL"),
        ("ftp://example.com", "http(s) URL"),
        ("http://[::1", "malformed"),
        ("http://127.0.0.1:99999", "malformed port"),
        ("http://a b", "space or control character"),
        ("http://example.com/\x07", "space or control character"),
    ],
)
def test_a_url_the_gate_cannot_use_is_exit_2_before_anything_is_sent(
    url: str, needle: str, tmp_path: Path
) -> None:
    ran = run_opsctl("deploy-gate", "--url", url, "--timeout", "5", cwd=tmp_path)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert needle in ran.stderr and "Traceback" not in ran.stderr


def test_help_names_every_option_and_the_exit_codes(tmp_path: Path) -> None:
    for flag in ("--help", "-h"):
        ran = run_opsctl("deploy-gate", flag, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        for option in ("--url", "--timeout", "--interval", "--canary", "--json", "--quiet"):
            assert option in ran.stdout
        assert "Exit codes: 0 every check passed" in ran.stdout


def test_main_called_from_python_raises_system_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in set(os.environ) - set(clean_env()):  # the opsctl configuration of this shell
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPSCTL_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as ended:
        main(["deploy-gate", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "0.1", "-q"])
    assert ended.value.code == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://app.example.com",
        "http://10.0.0.5:8080",
        "http://[2001:db8::1]/",
        "http://127.0.0.1.nip.io",
    ],
)
def test_the_token_never_leaves_the_machine_in_clear_text(url: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="clear text"):
        GateOptions(url=url, token="s3cret").validate()
    ran = run_opsctl(
        "deploy-gate",
        "--url",
        url,
        "--timeout",
        "5",
        env={"OPSCTL_API_TOKEN": "s3cret"},
        cwd=tmp_path,
    )
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "refusing to send OPSCTL_API_TOKEN" in ran.stderr and "s3cret" not in ran.stderr
    assert "round" not in ran.stderr  # refused before the first round
    # The dashboard sends the same token to the same endpoints: the same rule, before it starts.
    shown = run_opsctl("dashboard", "--url", url, env={"OPSCTL_API_TOKEN": "s3cret"}, cwd=tmp_path)
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert "refusing to send OPSCTL_API_TOKEN" in shown.stderr and "s3cret" not in shown.stderr


@pytest.mark.parametrize(
    "url",
    ["https://app.example.com", "http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:8"],
)
def test_the_token_may_go_over_https_or_to_this_machine(url: str) -> None:
    GateOptions(url=url, token="s3cret").validate()
    GateOptions(url="http://app.example.com", token=None).validate()  # no token, nothing to leak


def test_a_passing_gate_on_redis_and_its_verdict_lost_to_a_full_disk(
    daemons: Callable[..., Daemon],
    make_settings: SettingsFactory,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    port = free_port()
    env = {
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "PORT": str(port),
        "APP_URL": f"http://127.0.0.1:{port}",
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
    }
    web = daemons("daemon", "web", env=env)
    web.wait_http(f"{env['APP_URL']}/api/health/live")
    asyncio.run(add_worker_heartbeat(make_settings(**env)))
    ran = run_opsctl("deploy-gate", "--json", "--timeout", "10", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    assert report["status"] in ("pass", "warn")
    assert report["rounds"] == 1
    assert {c["name"]: c["status"] for c in report["checks"]}["workers"] == "pass"

    # The same passing gate with nowhere to write its verdict: exit 1, one line, no trace.
    blocked = run_opsctl_to_full_disk("deploy-gate", "--timeout", "10", env=env, cwd=tmp_path)
    assert blocked.returncode == 1, blocked.stderr
    assert "Traceback" not in blocked.stderr
