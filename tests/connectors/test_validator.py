"""The validator's contract: every problem at once, located, safe to print, never a crash."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from opsctl.connectors import CODES, find_definition_files, load_definitions, validate_bytes
from opsctl.connectors._jsontext import MAX_DEPTH, read_json
from opsctl.connectors.durations import DurationError, format_duration, parse_duration
from opsctl.connectors.loader import DefinitionPathError
from opsctl.connectors.templates import MISSING, TemplateError, render, render_value, scan_template
from opsctl.connectors.validator import MAX_FILE_BYTES, load_schema, validate_file
from tests.connectors._support import acme, write

ROOT = Path(__file__).resolve().parents[2]


def errors(document: Any, **options: Any) -> set[tuple[str, str]]:
    text = document if isinstance(document, str | bytes) else json.dumps(document, indent=2)
    report = validate_bytes(text, **options)
    return {(f.code, f.pointer) for f in report.errors}


def test_every_problem_is_reported_in_one_run() -> None:
    d = acme()
    d["auth"]["scops"] = d["auth"].pop("scopes")
    d["version"] = 3
    d["operations"][1]["id"] = "get_me"
    d["check"] = "nope"
    d["rate_limits"]["policies"][0]["window"] = "PT0S"
    d["operations"][2]["path"] = "/items/{{input.colr}}"
    assert errors(d) == {
        ("unknown-key", "/auth/scops"),
        ("incomplete-oauth", "/auth"),
        ("wrong-type", "/version"),
        ("duplicate-operation-id", "/operations/1/id"),
        ("unknown-check-operation", "/check"),
        ("invalid-duration", "/rate_limits/policies/0/window"),
        ("unknown-template-variable", "/operations/2/path"),
    }


def test_findings_are_sorted_by_position() -> None:
    d = acme()
    d["check"] = "nope"
    d["version"] = "x"
    report = validate_bytes(json.dumps(d, indent=2))
    positions = [(f.line, f.column) for f in report.findings]
    assert positions == sorted(positions)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.1:8081"])
def test_plain_http_to_loopback_only_outside_production(host: str) -> None:
    d = acme()
    d["base_url"] = f"http://{host}/v1"
    d["auth"]["token_url"] = f"http://{host}/token"
    assert errors(d, allow_loopback_http=True) == set()
    assert errors(d, allow_loopback_http=False) == {
        ("insecure-url", "/base_url"),
        ("insecure-url", "/auth/token_url"),
    }


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://10.0.0.1/v1", "insecure-url"),
        ("http://127.0.0.1.example.com/v1", "insecure-url"),
        ("ftp://api.acme.example", "invalid-url"),
        ("https://", "invalid-url"),
        ("https://user:pw@api.acme.example", "invalid-url"),
        ("https://api.acme.example:99999/v1", "invalid-url"),
        ("{{config.region}}/v1", "invalid-url"),
        ("https://api.acme.example/{{input.x}}", "template-not-allowed"),
    ],
)
def test_base_url_problems(url: str, code: str) -> None:
    d = acme()
    d["base_url"] = url
    assert errors(d) == {(code, "/base_url")}


def test_warnings_do_not_make_a_definition_invalid() -> None:
    d = acme()
    d["release_stage"] = "deprecated"
    d["docs_url"] = "http://docs.acme.example"
    del d["rate_limits"]["policies"][0]["scope"]
    d["rate_limits"]["policies"][0]["source"]["as_of"] = "2031-01-01"
    d["operations"][0]["method"] = "POST"
    d["operations"][1]["body"] = {"x": 1}
    d["operations"][1]["input"]["required"] = []
    report = validate_bytes(json.dumps(d), today=date(2030, 1, 1), file_stem="other")
    assert report.ok and report.definition is not None
    assert {f.code for f in report.warnings} == {
        "deprecated-connector",
        "insecure-docs-url",
        "policy-without-scope",
        "source-date-in-future",
        "check-not-read-only",
        "body-on-get",
        "optional-path-variable",
        "id-filename-mismatch",
    }
    assert all(CODES[f.code].severity == "warning" for f in report.warnings)


def test_missing_docs_url_is_a_warning() -> None:
    d = acme()
    del d["docs_url"]
    report = validate_bytes(json.dumps(d))
    assert report.ok and [f.code for f in report.warnings] == ["missing-docs-url"]


@pytest.mark.parametrize(
    ("auth", "template", "ok"),
    [
        ({"type": "api_key", "name": "X-Key"}, "{{credentials.api_key}}", True),
        ({"type": "basic"}, "{{credentials.username}}:{{credentials.password}}", True),
        ({"type": "bearer"}, "{{credentials.token}}", True),
        ({"type": "none"}, "{{credentials.token}}", False),
        ({"type": "bearer"}, "{{credentials.access_token}}", False),
    ],
)
def test_credentials_each_auth_type_provides(auth: dict[str, Any], template: str, ok: bool) -> None:
    d = acme()
    d["auth"] = auth
    d["operations"][2]["headers"] = {"X-Extra": template}
    expected = set() if ok else {("unknown-template-variable", "/operations/2/headers/X-Extra")}
    assert errors(d) == expected


def test_credentials_never_in_a_path() -> None:
    d = acme()
    d["operations"][0]["path"] = "/me/{{credentials.access_token}}"
    assert errors(d) == {("template-not-allowed", "/operations/0/path")}


def test_every_malformed_template_in_one_string() -> None:
    d = acme()
    d["operations"][2]["query"]["color"] = "}} {{input.color {{ x }} {{input.color}}"
    report = validate_bytes(json.dumps(d))
    codes = [f.code for f in report.errors]
    assert codes == ["template-syntax"] * 3


def test_window_kinds_need_their_fields() -> None:
    d = acme()
    d["rate_limits"]["policies"].append(
        {
            "id": "inflight",
            "kind": "concurrency",
            "limit": 5,
            "source": {"url": "https://x.example", "as_of": "2024-01-01"},
        }
    )
    assert errors(d) == {
        ("unknown-key", "/rate_limits/policies/2/limit"),
        ("missing-key", "/rate_limits/policies/2"),
    }


def test_the_schema_forbids_unknown_keys_everywhere() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    seen = 0

    def walk(node: Any) -> None:
        nonlocal seen
        if isinstance(node, dict):
            if "properties" in node and node.get("type") == "object":
                seen += 1
                assert node.get("additionalProperties") is False, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for name, definition in schema["$defs"].items():
        if name != "object_schema":  # a JSON Schema itself: its properties are open by design
            walk(definition)
    walk({k: v for k, v in schema.items() if k != "$defs"})
    assert seen > 20
    assert schema["$defs"]["auth"]["x-discriminator"] == "type"
    assert schema["$defs"]["policy"]["x-discriminator"] == "kind"


def test_error_codes_named_by_the_schema_exist() -> None:
    text = json.dumps(load_schema())
    named = set(re.findall(r'"x-error-codes": \{([^}]*)\}', text))
    for block in named:
        for code in re.findall(r': "([a-z-]+)"', block):
            assert code in CODES


def test_docs_list_every_code() -> None:
    docs = (ROOT / "docs" / "connectors.md").read_text()
    missing = [code for code in CODES if f"`{code}`" not in docs]
    assert not missing


# --- hostile input ------------------------------------------------------------------------


def test_ansi_escapes_in_keys_are_escaped_in_messages() -> None:
    d = acme()
    d["\x1b[31mred\x1b[0m"] = 1
    d["auth"]["type"] = "\x1b]0;pwned\x07"
    d["rate_limits"]["plans"]["\x1b[1mp"] = {"policies": {"burst": {"limt": 1, "\x1b[2J": 2}}}
    report = validate_bytes(json.dumps(d))
    for finding in report.findings:
        assert "\x1b" not in finding.message and "\x07" not in finding.message
        assert finding.message.isprintable()
    assert {f.code for f in report.errors} == {"unknown-key", "unknown-auth-type"}
    assert len(report.errors) == 4


def test_bidi_and_huge_values_are_shortened_and_escaped() -> None:
    d = acme()
    d["release_stage"] = "\u202estable" + "x" * 10_000
    report = validate_bytes(json.dumps(d))
    (finding,) = report.errors
    assert "\u202e" not in finding.message and len(finding.message) < 400


def test_huge_nesting_is_a_clear_error_not_a_crash() -> None:
    text = "[" * 500_000 + "]" * 500_000  # 1 MB
    report = validate_bytes(text)
    (finding,) = report.findings
    assert finding.code == "too-deeply-nested"
    assert (finding.line, finding.column) == (1, MAX_DEPTH + 1)


def test_nesting_inside_strings_does_not_count() -> None:
    d = acme()
    d["description"] = "[" * 1000
    assert errors(d) == set()


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(" " * (MAX_FILE_BYTES + 1))
    report = validate_file(path)
    assert [f.code for f in report.findings] == ["file-too-large"]


def test_a_folder_named_like_a_definition_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "odd.json").mkdir()
    report = validate_file(tmp_path / "odd.json")
    assert [f.code for f in report.findings] == ["unreadable-file"]


def test_invalid_json_positions() -> None:
    with pytest.raises(Exception) as info:
        read_json('{\n  "a": 1,\n  "b": [1, 2,, 3]\n}')
    assert (info.value.line, info.value.column) == (3, 14)  # type: ignore[attr-defined]
    doc = read_json('{"a~b/c": {"x": [10, {"y": true}]}, "n": -1.5e3}')
    assert doc.locate("/a~0b~1c/x/1/y") == (1, 28)
    assert doc.locate("/a~0b~1c", key=True) == (1, 2)
    assert doc.locate("/n") == (1, 42)
    assert doc.locate("/missing/deeper") == (1, 1)


def test_a_bom_is_tolerated() -> None:
    assert errors(b"\xef\xbb\xbf" + json.dumps(acme()).encode()) == set()


def test_huge_integer_is_invalid_json_not_a_crash() -> None:
    assert errors('{"version": ' + "9" * 5000 + "}") == {("invalid-json", "")}


# --- files and folders --------------------------------------------------------------------


def test_duplicate_connector_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.json", acme())
    second = acme()
    second["id"] = "acme"
    write(tmp_path, "b.json", second)
    catalog = load_definitions([tmp_path])
    assert list(catalog.definitions) == ["acme"]
    (dup,) = catalog.errors
    assert dup.code == "duplicate-connector-id" and dup.file.endswith("b.json")
    assert dup.pointer == "/id" and (dup.line, dup.column) == (3, 9)
    assert "a.json" in dup.message


def test_files_are_found_recursively_once_and_hidden_ones_skipped(tmp_path: Path) -> None:
    write(tmp_path, "a.json", "{}")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "b.json", "{}")
    write(tmp_path / "sub", "notes.txt", "x")
    (tmp_path / ".git").mkdir()
    write(tmp_path / ".git", "c.json", "{}")
    write(tmp_path, ".d.json", "{}")
    found = find_definition_files([tmp_path, tmp_path / "a.json"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.json", "sub/b.json"]


def test_missing_paths_are_all_named(tmp_path: Path) -> None:
    with pytest.raises(DefinitionPathError) as info:
        find_definition_files([tmp_path, tmp_path / "x", tmp_path / "y.json"])
    assert "x" in str(info.value) and "y.json" in str(info.value)
    assert info.value.exit_code == 2


# --- durations and templates --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT1S", 1),
        ("PT10S", 10),
        ("PT1M", 60),
        ("PT1H", 3600),
        ("P1D", 86400),
        ("P1W", 604800),
        ("PT0.5S", 0.5),
        ("P1DT1H", 90000),
        ("pt30s", 30),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "1S", "PT1", "P1M", "P1Y", "PT0S", "PT-1S", "10s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (1, 10, 60, 3600, 86400, 0.5)] == [
        "PT1S",
        "PT10S",
        "PT1M",
        "PT1H",
        "P1D",
        "PT0.5S",
    ]


def test_render_templates() -> None:
    variables = {"config": {"region": "eu"}, "input": {"id": "a/b", "n": 5, "on": True}}
    assert render("https://{{config.region}}.x/{{ input.id }}", variables) == "https://eu.x/a/b"
    assert render("/items/{{input.id}}", variables, encode=lambda s: s.replace("/", "%2F")) == (
        "/items/a%2Fb"
    )
    with pytest.raises(TemplateError):
        render("{{input.missing}}", variables)
    value = {"n": "{{input.n}}", "on": "{{input.on}}", "gone": "{{input.missing}}", "l": ["x"]}
    assert render_value(value, variables) == {"n": 5, "on": True, "l": ["x"]}
    assert render_value("{{input.missing}}", variables) is MISSING
    refs, problems = scan_template("{{a.b}} {{c}} }}")
    assert [r.variable for r in refs] == ["a.b"] and len(problems) == 2
