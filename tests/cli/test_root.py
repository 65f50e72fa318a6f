"""The root command: fast --version and --help that agree with the Typer app."""

from __future__ import annotations

import os
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
@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
def test_a_full_disk_under_stdout_is_one_line_and_exit_1(
    args: list[str], buffered: bool, tmp_path: Path
) -> None:
    # Unbuffered, the first write fails; buffered, the write succeeds and the flush fails.
    env = {"OPSCTL_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "" if buffered else "1"}
    ran = run_opsctl_to_full_disk(*args, env=env, cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr
    errors = [line for line in ran.stderr.splitlines() if line.startswith("opsctl: error:")]
    assert errors == [errors[0]] and "No space left on device" in errors[0], ran.stderr
    assert "Traceback" not in ran.stderr and "Exception ignored" not in ran.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["db", "--help"],
        ["deploy-gate", "--url", "http://127.0.0.1:1", "--timeout", "0.1", "--json", "--quiet"],
    ],
)
def test_a_pipe_its_reader_closed_is_exit_1_and_nothing_said(
    args: list[str], tmp_path: Path
) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before the first byte: every write is EPIPE
    try:
        ran = subprocess.run(
            [OPSCTL, *args],
            env=clean_env({"OPSCTL_DATA_DIR": str(tmp_path / "data")}),
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (ran.returncode, ran.stderr) == (1, "")
