"""The root command: fast --version and --help that agree with the Typer app."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import typer.main

import opsctl
from opsctl.cli._help import COMMANDS, root_help
from opsctl.cli.app import app
from tests._support import OPSCTL, clean_env, run_opsctl, run_opsctl_to_full_disk


def test_static_help_lists_exactly_the_registered_commands() -> None:
    group = typer.main.get_command(app)
    registered = {name: cmd.get_short_help_str(limit=300) for name, cmd in group.commands.items()}  # type: ignore[attr-defined]
    assert dict(COMMANDS) == registered


def test_help_and_version_answer_without_typer() -> None:
    for flag in ("--help", "-h"):
        result = run_opsctl(flag)
        assert result.returncode == 0
        assert result.stdout == root_help()
    for flag in ("--version", "-V"):
        result = run_opsctl(flag)
        assert (result.returncode, result.stdout) == (0, f"opsctl {opsctl.__version__}\n")


def test_typer_paths_still_work() -> None:
    result = run_opsctl("db", "--help")
    assert result.returncode == 0 and "migrate" in result.stdout
    assert run_opsctl("--version", "db").returncode == 0
    unknown = run_opsctl("frobnicate")
    assert unknown.returncode == 2 and "frobnicate" in unknown.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["db", "--help"],
        ["deploy-gate", "--help"],
        ["deploy-gate", "--url", "http://127.0.0.1:1", "--timeout", "0.1", "--json"],
        ["check", "queue"],
        ["connectors", "list"],
    ],
)
def test_a_full_disk_under_stdout_is_one_line_and_exit_1(args: list[str], tmp_path: Path) -> None:
    ran = run_opsctl_to_full_disk(
        *args, env={"OPSCTL_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path
    )
    assert ran.returncode == 1, ran.stderr
    errors = [line for line in ran.stderr.splitlines() if line.startswith("opsctl: error:")]
    assert errors == [errors[0]] and "No space left on device" in errors[0], ran.stderr
    assert "Traceback" not in ran.stderr and "Exception ignored" not in ran.stderr


def test_a_reader_that_stops_early_gets_no_trace(tmp_path: Path) -> None:
    # 'head -c 1' closes the pipe after one byte of a long help text.
    ran = subprocess.run(
        f"'{OPSCTL}' db --help | head -c 1 >/dev/null; echo \"rc=${{PIPESTATUS[0]}}\"",
        shell=True,
        executable="/bin/bash",
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.stdout.strip() in ("rc=0", "rc=1"), ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr and "Exception ignored" not in ran.stderr
