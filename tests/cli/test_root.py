"""The root command: a lazy group whose help and version load no command module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import opsctl
from opsctl.cli.app import COMMANDS, load_command
from tests._support import OPSCTL, clean_env, run_opsctl, run_opsctl_to_full_disk


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_summary_is_the_first_line_of_the_commands_own_help(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    assert COMMANDS[name].summary == command.get_short_help_str(limit=300)


def test_help_lists_every_command_and_version_answers() -> None:
    for flag in ("--help", "-h"):
        result = run_opsctl(flag)
        assert result.returncode == 0, result.stderr
        listed = result.stdout.split("Commands:", 1)[1]
        for name in COMMANDS:
            assert f"\n  {name} " in listed, name
    for flag in ("--version", "-V"):
        result = run_opsctl(flag)
        assert (result.returncode, result.stdout) == (0, f"opsctl {opsctl.__version__}\n")


_LOADED = (
    "import sys\n"
    "from opsctl.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write('LOADED ' + ' '.join(sorted(m for m in sys.modules"
    " if m.startswith('opsctl.cli.'))) + '\\n')\n"
)


def loaded_cli_modules(*args: str, cwd: Path) -> set[str]:
    ran = subprocess.run(
        [sys.executable, "-c", _LOADED, *args],
        env=clean_env({"OPSCTL_DATA_DIR": str(cwd / "data")}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    [line] = [ln for ln in ran.stderr.splitlines() if ln.startswith("LOADED")]
    return set(line.split()[1:])


def test_the_root_help_imports_no_command_and_a_command_only_its_own(tmp_path: Path) -> None:
    assert loaded_cli_modules("--help", cwd=tmp_path) == {"opsctl.cli.app"}
    assert loaded_cli_modules("--version", cwd=tmp_path) == {"opsctl.cli.app"}
    gate = loaded_cli_modules("deploy-gate", "--help", cwd=tmp_path)
    assert gate - {"opsctl.cli._checks", "opsctl.cli._common"} == {
        "opsctl.cli.app",
        "opsctl.cli.gate",
    }


def test_typer_paths_still_work() -> None:
    result = run_opsctl("db", "--help")
    assert result.returncode == 0 and "migrate" in result.stdout
    assert run_opsctl("--version", "db").returncode == 0
    unknown = run_opsctl("frobnicate")
    assert unknown.returncode == 2 and "frobnicate" in unknown.stderr
    assert "Traceback" not in unknown.stderr


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
