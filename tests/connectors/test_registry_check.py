"""The ``registry`` health check: pass with a count, warn when empty, fail naming bad files."""

from __future__ import annotations

from pathlib import Path

from opsctl.health import check_registry
from tests.conftest import SettingsFactory
from tests.connectors._support import acme, write

ROOT = Path(__file__).resolve().parents[2]


def test_pass_with_the_count(make_settings: SettingsFactory) -> None:
    result = check_registry(make_settings(DEFINITIONS_PATH=str(ROOT / "definitions")))
    assert result.name == "registry" and result.status == "pass", result.reason
    assert result.observed == result.details["definitions"] >= 8
    assert result.unit == "definitions"


def test_warn_when_none_are_found(make_settings: SettingsFactory, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = check_registry(make_settings(DEFINITIONS_PATH=str(tmp_path / "empty")))
    assert result.status == "warn" and "no connector definitions" in result.reason
    missing = check_registry(make_settings(DEFINITIONS_PATH=str(tmp_path / "gone")))
    assert missing.status == "warn" and "missing" in missing.reason


def test_fail_names_the_first_invalid_files(make_settings: SettingsFactory, tmp_path: Path) -> None:
    folder = tmp_path / "defs"
    folder.mkdir()
    write(folder, "acme.json", acme())
    for n in range(5):
        write(folder, f"bad{n}.json", "{")
    result = check_registry(make_settings(DEFINITIONS_PATH=str(folder)))
    assert result.status == "fail"
    assert result.reason.startswith("5 invalid definition file(s): defs/bad0.json:1:2 invalid-json")
    assert "bad2.json" in result.reason and "bad3.json" not in result.reason
    assert "and 2 more" in result.reason
    assert result.observed == 1 and result.details["invalid"] == 5


def test_production_refuses_loopback_http(make_settings: SettingsFactory, tmp_path: Path) -> None:
    d = acme()
    d["base_url"] = "http://127.0.0.1:9000"
    write(tmp_path, "acme.json", d)
    dev = check_registry(make_settings(DEFINITIONS_PATH=str(tmp_path)))
    assert dev.status == "pass"
    prod = check_registry(
        make_settings(
            DEFINITIONS_PATH=str(tmp_path), OPSCTL_ENV="production", OPSCTL_API_TOKEN="t" * 32
        )
    )
    assert prod.status == "fail" and "insecure-url" in prod.reason


def test_validates_again_only_when_a_file_changes(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "defs"
    folder.mkdir()
    write(folder, "acme.json", acme())
    settings = make_settings(DEFINITIONS_PATH=str(folder))
    first = check_registry(settings)
    assert first.status == "pass"
    again = check_registry(settings)  # unchanged files: the cached verdict, a new timestamp
    assert (again.status, again.reason) == (first.status, first.reason)
    write(folder, "broken.json", "{")
    assert check_registry(settings).status == "fail"
    (folder / "broken.json").unlink()
    assert check_registry(settings).status == "pass"
