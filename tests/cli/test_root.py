"""The root command: fast --version and --help that agree with the Typer app."""

from __future__ import annotations

import typer.main

import opsctl
from opsctl.cli._help import COMMANDS, root_help
from opsctl.cli.app import app
from tests._support import run_opsctl


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
