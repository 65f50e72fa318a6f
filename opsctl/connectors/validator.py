"""The validator of connector definitions: JSON Schema first, then the semantic checks.

It reports every problem of a file in one run, each with its line, column,
JSON pointer, stable code (:data:`opsctl.connectors.findings.CODES`) and, for unknown keys and
references, a "did you mean …?" hint. A file with no errors also yields its typed model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from opsctl.connectors._build import definition_from_json
from opsctl.connectors._collect import Collector, brief, did_you_mean, show
from opsctl.connectors._fields import Options
from opsctl.connectors._jsontext import JsonDocument, JsonTextError, join_pointer, read_json
from opsctl.connectors._semantic import check_document
from opsctl.connectors.findings import Finding, escape_controls
from opsctl.connectors.model import Definition

MAX_FILE_BYTES = 2 * 1024 * 1024
"""A definition is a few kilobytes; anything past this is a mistake, not a connector."""

SCHEMA_RESOURCE = "schema/definition-v1.json"

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}
_DEFAULT_CODES = {
    "additionalProperties": "unknown-key",
    "required": "missing-key",
    "type": "wrong-type",
    "enum": "invalid-value",
    "const": "invalid-value",
    "pattern": "invalid-format",
    "minimum": "out-of-range",
    "maximum": "out-of-range",
    "exclusiveMinimum": "out-of-range",
    "exclusiveMaximum": "out-of-range",
    "minLength": "empty-value",
    "minItems": "empty-value",
    "minProperties": "empty-value",
    "maxLength": "out-of-range",
    "maxItems": "out-of-range",
    "uniqueItems": "duplicate-item",
}


@dataclass(frozen=True)
class FileReport:
    """The findings of one file and, when it has no errors, its model."""

    file: str
    findings: tuple[Finding, ...]
    definition: Definition | None = None
    connector_id: str | None = None
    """The id the file declares, even when the file is invalid (for duplicate detection)."""
    source: JsonDocument | None = field(default=None, repr=False, compare=False)

    @property
    def id_location(self) -> tuple[int, int]:
        """Line and column of the declared id (the file's start when it has none)."""
        return self.source.locate("/id") if self.source is not None else (1, 1)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_error)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.is_error)

    @property
    def ok(self) -> bool:
        return not self.errors


def load_schema() -> dict[str, Any]:
    """The JSON Schema of format v1, as shipped inside the package."""
    text = resources.files("opsctl.connectors").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _schema_validator() -> Draft202012Validator:
    # The schema's references are local and not recursive: inlining them once saves the
    # validator a reference lookup at every step (about half its time on a definition).
    schema = load_schema()
    defs = schema.pop("$defs", {})
    return Draft202012Validator(_inline_refs(schema, defs))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def validate_bytes(
    data: bytes | str,
    *,
    file: str = "<definition>",
    allow_loopback_http: bool = True,
    today: date | None = None,
    file_stem: str | None = None,
    source_file: Path | None = None,
) -> FileReport:
    """Validate one definition's text; never raises for anything wrong with the text."""
    options = Options(allow_loopback_http, today, file_stem)
    collector = Collector(file)
    if len(data) > MAX_FILE_BYTES:
        collector.add_at(
            "file-too-large",
            1,
            1,
            f"the file is {len(data):,} bytes; a definition must be under {MAX_FILE_BYTES:,}",
        )
        return _report(collector)
    try:
        doc = read_json(data)
    except JsonTextError as exc:
        collector.add_at(exc.code, exc.line, exc.column, exc.message)
        return _report(collector)
    return validate_document(doc, collector, options, source_file)


def validate_file(
    path: Path,
    *,
    display: str | None = None,
    allow_loopback_http: bool = True,
    today: date | None = None,
) -> FileReport:
    """Validate the definition in ``path`` (``display`` is the name findings carry)."""
    name = display if display is not None else str(path)
    try:
        if not path.is_file():
            raise IsADirectoryError
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            collector = Collector(name)
            collector.add_at(
                "file-too-large",
                1,
                1,
                f"the file is {size:,} bytes; a definition must be under {MAX_FILE_BYTES:,}",
            )
            return _report(collector)
        data = path.read_bytes()
    except OSError as exc:
        collector = Collector(name)
        why = (
            "it is not a regular file"
            if isinstance(exc, IsADirectoryError)
            else (exc.strerror or type(exc).__name__)
        )
        collector.add_at("unreadable-file", 1, 1, f"cannot read the file: {why}")
        return _report(collector)
    return validate_bytes(
        data,
        file=name,
        allow_loopback_http=allow_loopback_http,
        today=today,
        file_stem=path.stem,
        source_file=path,
    )


def validate_document(
    doc: JsonDocument,
    collector: Collector,
    options: Options,
    source_file: Path | None = None,
) -> FileReport:
    collector.doc = doc
    for pointer, _ in doc.duplicate_keys:
        collector.add(
            "duplicate-key",
            pointer,
            f"key {show(pointer.rsplit('/', 1)[-1])} appears twice in this object; "
            "JSON keeps only the last",
            at_key=True,
        )
    value = doc.value
    for error in _schema_validator().iter_errors(value):
        _translate(collector, error)
    if not isinstance(value, dict):
        return _report(collector)
    check_document(collector, value, options)
    connector_id = value.get("id") if isinstance(value.get("id"), str) else None
    definition = None
    if not collector.has_errors:
        definition = definition_from_json(value, source_file=source_file)
    return _report(collector, definition, connector_id, doc)


def _report(
    collector: Collector,
    definition: Definition | None = None,
    connector_id: str | None = None,
    source: JsonDocument | None = None,
) -> FileReport:
    findings = tuple(sorted(collector.findings, key=Finding.sort_key))
    return FileReport(collector.file, findings, definition, connector_id, source)


# --- JSON Schema errors → findings -------------------------------------------------------


def _describe(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _codes(error: ValidationError) -> dict[str, str]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    codes = schema.get("x-error-codes", {})
    return codes if isinstance(codes, dict) else {}


def _translate(c: Collector, error: ValidationError) -> None:
    keyword = str(error.validator)
    pointer = join_pointer("", *error.absolute_path)
    codes = _codes(error)
    code = codes.get(keyword, _DEFAULT_CODES.get(keyword, "schema-violation"))
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    if keyword == "oneOf":
        _translate_one_of(c, error, pointer, schema, codes)
    elif keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        where = f" in {escape_controls(pointer)}" if pointer else ""
        for key in instance:
            if key not in allowed:
                c.add(
                    code,
                    join_pointer(pointer, key),
                    f"unknown key {show(key)}{where}",
                    hint=did_you_mean(key, allowed),
                    at_key=True,
                )
    elif keyword == "required" and isinstance(instance, dict):
        for key in error.validator_value:
            if key not in instance:
                specific = codes.get(f"required:{key}", code)
                where = f" in {escape_controls(pointer)}" if pointer else ""
                c.add(specific, pointer, f"missing required key {show(key)}{where}")
    elif keyword == "type":
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [expected]
        c.add(
            code,
            pointer,
            f"expected {' or '.join(names)}, got {_describe(instance)}",
        )
    elif keyword in ("enum", "const"):
        allowed_values = error.validator_value if keyword == "enum" else [error.validator_value]
        c.add(
            code,
            pointer,
            f"{show(instance)} is not allowed; expected "
            f"{', '.join(show(v) for v in allowed_values)}",
            hint=did_you_mean(instance, [v for v in allowed_values if isinstance(v, str)]),
        )
    elif keyword == "pattern":
        what = schema.get("description", f"a match of {error.validator_value}")
        c.add(code, pointer, f"{show(instance)} has the wrong form; expected {what}")
    elif keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        relation = {
            "minimum": "at least",
            "exclusiveMinimum": "above",
            "maximum": "at most",
            "exclusiveMaximum": "below",
        }[keyword]
        c.add(code, pointer, f"{show(instance)} must be {relation} {error.validator_value}")
    elif keyword in ("minItems", "minLength", "minProperties"):
        c.add(code, pointer, "must not be empty" if error.validator_value == 1 else error.message)
    elif keyword == "uniqueItems":
        c.add(code, pointer, "items must be distinct; this list repeats one")
    else:
        c.add(code, pointer, brief(error.message))


def _branch_values(branch: Any, key: str) -> list[Any]:
    prop = branch.get("properties", {}).get(key, {}) if isinstance(branch, dict) else {}
    if "const" in prop:
        return [prop["const"]]
    return list(prop.get("enum", []))


def _translate_one_of(
    c: Collector,
    error: ValidationError,
    pointer: str,
    schema: dict[str, Any],
    codes: dict[str, str],
) -> None:
    """A discriminated union: report the errors of the branch the discriminator selects."""
    key = schema.get("x-discriminator")
    instance = error.instance
    if not isinstance(instance, dict):
        return  # the holder's "type": "object" has reported it
    if not isinstance(key, str):
        c.add("schema-violation", pointer, brief(error.message))
        return
    branches = schema.get("oneOf", [])
    values = [_branch_values(b, key) for b in branches]
    everything = [v for vs in values for v in vs]
    if key not in instance:
        c.add(
            "missing-key",
            pointer,
            f"missing required key {show(key)}; one of {', '.join(show(v) for v in everything)}",
        )
        return
    chosen = next((i for i, vs in enumerate(values) if instance[key] in vs), None)
    if chosen is None:
        c.add(
            codes.get("discriminator", "invalid-value"),
            join_pointer(pointer, key),
            f"{key} {show(instance[key])} is not one of {', '.join(show(v) for v in everything)}",
            hint=did_you_mean(instance[key], everything),
        )
        return
    for sub in _branch_errors(error.context or [], chosen):
        _translate(c, sub)


def _branch_errors(errors: Iterable[ValidationError], branch: int) -> Iterable[ValidationError]:
    return (e for e in errors if e.relative_schema_path and e.relative_schema_path[0] == branch)
