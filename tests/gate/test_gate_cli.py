"""``opsctl deploy-gate`` is answered without Typer, and means exactly what the Typer command
means: the same options, values and defaults; Typer answers help and every usage error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from opsctl.cli import _gate_run, main
from opsctl.cli._gate_run import GateArgs
from opsctl.cli.gate import standalone
from tests._support import (
    Daemon,
    clean_env,
    free_port,
    run_opsctl,
    run_opsctl_to_full_disk,
)
from tests.conftest import SettingsFactory
from tests.gate.conftest import add_worker_heartbeat

VALID = [
    [],
    ["--url", "http://127.0.0.1:1"],
    ["--url=https://app.example.com/base?x=1"],
    ["--timeout", "5"],
    ["--timeout=0.1", "--interval=600"],
    ["--timeout", "3600", "--interval", "0.05"],
    ["--timeout", "1e2"],
    ["--canary", "--json", "-q"],
    ["--quiet", "--json"],
    ["--timeout", "5", "--timeout", "7"],  # the last one wins, as in Click
    ["--json", "--url", "http://h:8080", "--interval", "0.5", "--canary"],
]


def typer_reading(args: list[str], monkeypatch: pytest.MonkeyPatch) -> GateArgs:
    """What the Typer command hands to the gate for ``args``."""
    seen: list[GateArgs] = []

    def record(parsed: GateArgs) -> int:
        seen.append(parsed)
        return 0

    monkeypatch.setattr(_gate_run, "execute", record)
    with pytest.raises(SystemExit) as ended:
        standalone(args)
    assert ended.value.code in (0, None)
    [parsed] = seen
    return parsed


@pytest.mark.parametrize("args", VALID, ids=lambda a: " ".join(a) or "no options")
def test_fast_reading_agrees_with_typer(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _gate_run.parse(args) == typer_reading(args, monkeypatch)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["--bogus"],
        ["extra"],
        ["--url"],
        ["--url", ""],
        ["--url", "--json"],
        ["--timeout"],
        ["--timeout", "abc"],
        ["--timeout", "0"],
        ["--timeout", "3601"],
        ["--timeout", "nan"],
        ["--timeout", "inf"],
        ["--interval", "-1"],
        ["--interval=0.01"],
        ["-qq"],
        ["--json", "--", "--canary"],
    ],
)
def test_anything_unusual_is_left_to_typer(args: list[str]) -> None:
    assert _gate_run.parse(args) is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "3601"], "--timeout"),
        (["--interval=0.01"], "--interval"),
        (["--url"], "--url"),
        (["extra"], "extra"),
        (["-qq", "--timeout"], "--timeout"),
    ],
)
def test_typer_answers_usage_errors_with_2(args: list[str], needle: str, tmp_path: Path) -> None:
    ran = run_opsctl("deploy-gate", *args, cwd=tmp_path)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert needle in ran.stderr
    assert "Traceback" not in ran.stderr


def test_main_called_from_python_raises_system_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The console script's gate ends with os._exit; a caller in Python keeps its interpreter
    # (were os._exit taken here, this test's own process would end).
    monkeypatch.chdir(tmp_path)
    for name in set(os.environ) - set(clean_env()):  # the opsctl configuration of this shell
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPSCTL_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as ended:
        main(["deploy-gate", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "0.1", "-q"])
    assert ended.value.code == 1


def test_help_comes_from_typer(tmp_path: Path) -> None:
    for flag in ("--help", "-h"):
        ran = run_opsctl("deploy-gate", flag, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        for option in ("--url", "--timeout", "--interval", "--canary", "--json", "--quiet"):
            assert option in ran.stdout
        assert "Exit codes: 0 every check passed" in ran.stdout


# Modules the gate must not load: each costs milliseconds to tens of them at start-up
# (dataclasses imports inspect, and compiles methods for every class it decorates; socket
# builds four enums and imports selectors: opsctl/_net.py connects with _socket).
HEAVY = (
    "typer",
    "click",
    "rich",
    "asyncio",
    "redis",
    "aiohttp",
    "http.client",
    "email",
    "uuid",
    "dataclasses",
    "inspect",
    "threading",
    "socket",
    "selectors",
)

# The console script's call: main() reads sys.argv. The gate ends with os._exit (no atexit),
# so the modules are reported from there, which also shows that the fast exit was taken.
_REPORT_MODULES = (
    "import os, sys\n"
    "real_exit = os._exit\n"
    "def report_then_exit(code):\n"
    "    sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
    "    sys.stderr.flush()\n"
    "    real_exit(code)\n"
    "os._exit = report_then_exit\n"
    "from opsctl.cli import main\n"
    "main()\n"
)


def test_a_passing_gate_on_redis_loads_nothing_heavy_and_exits_at_once(
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
    import asyncio

    asyncio.run(add_worker_heartbeat(make_settings(**env)))
    ran = subprocess.run(
        [sys.executable, "-c", _REPORT_MODULES, "deploy-gate", "--json", "--timeout", "10"],
        env=clean_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)  # all of it: flushed before the exit
    assert report["status"] in ("pass", "warn")
    assert {c["name"]: c["status"] for c in report["checks"]}["workers"] == "pass"
    [line] = [ln for ln in ran.stderr.splitlines() if ln.startswith("MODULES ")]
    loaded = set(line.split()[1:])
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == [], f"the gate imported {heavy}"

    # The same passing gate with nowhere to write its verdict: exit 1, one line, no trace.
    blocked = run_opsctl_to_full_disk("deploy-gate", "--timeout", "10", env=env, cwd=tmp_path)
    assert blocked.returncode == 1, blocked.stderr
    assert "Traceback" not in blocked.stderr
