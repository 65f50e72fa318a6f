"""``opsctl connectors validate`` run as the installed command."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests._support import run_opsctl
from tests.connectors._support import acme, write

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^(?P<file>\S+):(?P<line>\d+):(?P<col>\d+)  (?P<ptr>\S+)  (?P<code>[a-z-]+)  .+$"
)


def validate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    result = run_opsctl("connectors", "validate", *args, cwd=cwd, env=env, timeout=30)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def findings(stdout: str) -> list[dict[str, str]]:
    return [m.groupdict() for line in stdout.splitlines() if (m := LINE.match(line))]


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A folder with good and bad definitions of every kind."""
    folder = tmp_path / "defs"
    folder.mkdir()
    write(folder, "acme.json", acme())
    typo = acme()
    typo["id"] = "typo"
    typo["auth"]["scops"] = typo["auth"].pop("scopes")
    write(folder, "typo.json", typo)
    deprecated = acme()
    deprecated["id"] = "old"
    deprecated["release_stage"] = "deprecated"
    write(folder, "old.json", deprecated)
    write(folder, "broken.json", '{\n  "id": "broken",\n  "version": 1.0.0\n}\n')
    write(folder, "empty.json", "")
    (folder / "blob.json").write_bytes(b"\x00\x01\x02\xff")
    (folder / "nested").mkdir()
    write(folder / "nested", "huge.json", "[" * 500_000 + "]" * 500_000)
    return folder


def test_shipped_definitions_pass(tmp_path: Path) -> None:
    result = validate(cwd=ROOT)
    assert result.returncode == 0, result.stdout
    assert re.search(r"checked \d+ file\(s\): \d+ valid, 0 invalid; 0 error", result.stdout)


def test_a_mixed_folder_reports_every_file_at_once(mixed: Path) -> None:
    result = validate(str(mixed), cwd=mixed.parent)
    assert result.returncode == 1
    out = result.stdout
    assert out.index("errors (") < out.index("warnings (")
    got = {(Path(f["file"]).name, f["code"]) for f in findings(out)}
    assert {
        ("typo.json", "unknown-key"),
        ("typo.json", "incomplete-oauth"),
        ("broken.json", "invalid-json"),
        ("empty.json", "empty-file"),
        ("blob.json", "not-text"),
        ("huge.json", "too-deeply-nested"),
        ("old.json", "deprecated-connector"),
    } <= got
    assert "acme.json" not in {Path(f["file"]).name for f in findings(out)}
    assert "defs/typo.json:" in out  # relative to the working folder, as given
    assert re.search(r"errors \((\d+)\):", out) and re.search(r"warnings \(1\):", out)
    assert "checked 7 file(s): 2 valid, 5 invalid" in out


def test_output_line_format_and_hint(tmp_path: Path) -> None:
    d = acme()
    d["auth"]["scops"] = d["auth"].pop("scopes")
    path = write(tmp_path, "acme.json", d)
    result = validate(str(path), cwd=tmp_path)  # absolute, but inside the working folder
    expected = (
        'acme.json:42:5  /auth/scops  unknown-key  unknown key "scops" in /auth  '
        '(did you mean "scopes"?)'
    )
    assert expected in result.stdout.splitlines()
    elsewhere = validate(str(path), cwd=ROOT)
    assert any(line.startswith(f"{path}:42:5  ") for line in elsewhere.stdout.splitlines())


def test_invalid_json_reports_the_syntax_error_position(tmp_path: Path) -> None:
    write(tmp_path, "bad.json", '{\n  "id": "bad",\n  "version": 1.0.0\n}\n')
    result = validate("bad.json", cwd=tmp_path)
    assert result.returncode == 1
    (finding,) = findings(result.stdout)
    assert (finding["file"], finding["line"], finding["col"]) == ("bad.json", "3", "17")
    assert (finding["ptr"], finding["code"]) == ("(root)", "invalid-json")


def test_json_output(mixed: Path) -> None:
    result = validate(str(mixed), "--json", cwd=mixed)
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["summary"] == {
        "files": 7,
        "valid": 2,
        "invalid": 5,
        "errors": sum(1 for f in body["findings"] if f["severity"] == "error"),
        "warnings": 1,
        "connectors": ["acme", "old"],
    }
    finding = next(f for f in body["findings"] if f["code"] == "unknown-key")
    assert set(finding) == {
        "file",
        "line",
        "column",
        "pointer",
        "severity",
        "code",
        "message",
        "hint",
    }
    assert finding["pointer"] == "/auth/scops" and finding["hint"] == 'did you mean "scopes"?'


def test_warnings_alone_exit_zero(tmp_path: Path) -> None:
    d = acme()
    d["release_stage"] = "deprecated"
    write(tmp_path, "acme.json", d)
    result = validate(str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert "warnings (1):" in result.stdout and "errors (" not in result.stdout


def test_a_path_that_does_not_exist_exits_2(tmp_path: Path) -> None:
    result = validate("nope.json", "missing-folder", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nope.json" in result.stderr and "missing-folder" in result.stderr


def test_ansi_escapes_never_reach_the_terminal_raw(tmp_path: Path) -> None:
    d = acme()
    d["\x1b[2J\x1b[31mevil"] = True
    d["operations"][0]["id"] = "get_me\x1b[0m"
    write(tmp_path, "evil\x1b[1m.json", d)
    for args in ((), ("--json",)):
        result = validate(str(tmp_path), *args, cwd=tmp_path)
        assert result.returncode == 1
        assert "\x1b" not in result.stdout and "\x1b" not in result.stderr
    assert "\\u001b[2J" in validate(str(tmp_path), cwd=tmp_path).stdout


def test_default_is_the_definitions_path(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one, "acme.json", acme())
    other = acme()
    other["id"] = "acme"
    write(two, "acme.json", other)
    result = validate(cwd=tmp_path, env={"DEFINITIONS_PATH": f"one:{two}"})
    assert result.returncode == 1
    (finding,) = findings(result.stdout)
    assert finding["code"] == "duplicate-connector-id"
    assert finding["file"] == "two/acme.json"
    missing = validate(cwd=tmp_path, env={"DEFINITIONS_PATH": "gone"})
    assert missing.returncode == 2 and "gone" in missing.stderr


def test_loopback_http_is_refused_in_production(tmp_path: Path) -> None:
    d = acme()
    d["base_url"] = "http://127.0.0.1:8081/v1"
    write(tmp_path, "acme.json", d)
    assert validate(str(tmp_path), cwd=tmp_path).returncode == 0
    assert validate(str(tmp_path), "--production", cwd=tmp_path).returncode == 1
    env = {"OPSCTL_ENV": "production", "OPSCTL_API_TOKEN": "t" * 32}
    result = validate(str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 1 and "insecure-url" in result.stdout


def test_an_empty_folder_says_so(tmp_path: Path) -> None:
    result = validate(str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert "no definition files" in result.stdout


def test_output_to_a_closed_pipe_is_quiet(mixed: Path) -> None:
    proc = subprocess.run(
        f"'{ROOT / '.venv/bin/opsctl'}' connectors validate '{mixed}' | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "Traceback" not in proc.stderr
