"""Findings of the validator: what is wrong, where, and the stable code naming the mistake.

Every code has one severity and one sentence here, the single list that the validator, the
documentation (docs/connectors.md) and the tests agree on.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Final, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Code:
    name: str
    severity: Severity
    summary: str


def _catalogue(*codes: Code) -> dict[str, Code]:
    return {code.name: code for code in codes}


def _e(name: str, summary: str) -> Code:
    return Code(name, "error", summary)


def _w(name: str, summary: str) -> Code:
    return Code(name, "warning", summary)


CODES: Final[dict[str, Code]] = _catalogue(
    # reading the file
    _e("unreadable-file", "the file cannot be read (permissions, a folder, a broken link)"),
    _e("file-too-large", "the file is larger than a definition can reasonably be"),
    _e("not-text", "the file is not UTF-8 text (a binary file)"),
    _e("empty-file", "the file holds nothing but whitespace"),
    _e("too-deeply-nested", "values nest deeper than 64 levels"),
    _e("invalid-json", "the text is not JSON; the position is the syntax error's"),
    _e("duplicate-key", "an object names the same key twice; JSON keeps only the last"),
    # the schema
    _e("unknown-key", "a key the format does not define (often a typo)"),
    _e("missing-key", "a required key is absent"),
    _e("wrong-type", "a value has the wrong JSON type"),
    _e("invalid-value", "a value is not one of those allowed"),
    _e("invalid-format", "a string does not have the required form"),
    _e("out-of-range", "a number is outside its allowed range"),
    _e("empty-value", "a list or object that must not be empty is empty"),
    _e("duplicate-item", "a list that must hold distinct items repeats one"),
    _e("schema-violation", "any other breach of the JSON Schema"),
    _e("unsupported-schema-version", 'schema_version is not "1"'),
    _e("invalid-id", "an id is not lower-case letters, digits, '_' (and '-' for connectors)"),
    _e("invalid-semver", "version is not a semantic version such as 1.2.0"),
    _e("invalid-release-stage", "release_stage is not experimental, beta, stable or deprecated"),
    _e("unknown-auth-type", "auth.type is not none, api_key, basic, bearer or oauth2"),
    _e("incomplete-oauth", "oauth2 auth lacks authorization_url, token_url or scopes"),
    _e("invalid-scope-token", "an OAuth scope is empty or holds whitespace"),
    _e(
        "unknown-policy-kind",
        "a policy kind is not fixed_window, sliding_window, token_bucket or concurrency",
    ),
    _e("missing-source", "a rate-limit policy lacks source, source.url or source.as_of"),
    _e("not-positive", "a limit, capacity, rate, cost, size or wait is zero or negative"),
    _e("unknown-scope", "a policy scope is not one of the scopes the limiter knows"),
    _e(
        "invalid-reset-format",
        "signals.reset_format is not delta_s, epoch_s, epoch_ms, http_date or iso8601",
    ),
    _e(
        "unknown-pagination-type",
        "pagination.type is not none, cursor, offset, page, link_header or next_url",
    ),
    _e("invalid-method", "an HTTP method is not GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS"),
    _e("invalid-path", "an operation path does not start with '/'"),
    _e("invalid-records-path", "a body path is not dotted keys ('data.items') or '$'"),
    _e("invalid-input-schema", "config_schema or an input schema is not a valid JSON Schema"),
    # meaning
    _e("duplicate-operation-id", "two operations share an id"),
    _e("duplicate-policy-id", "two rate-limit policies share an id"),
    _e("duplicate-connector-id", "two definition files declare the same connector id"),
    _e("unknown-check-operation", "check names no operation of the definition"),
    _e("check-needs-input", "the check operation requires input, so it cannot run unattended"),
    _e("unknown-operation-reference", "a policy's match.operations names no operation"),
    _e("unknown-policy-reference", "an operation's costs or a plan names no policy"),
    _e("plan-override-not-applicable", "a plan overrides a field the policy's kind lacks"),
    _e("invalid-duration", "a window is not an ISO-8601 duration of fixed length above zero"),
    _e("invalid-date", "source.as_of is not a date (YYYY-MM-DD)"),
    _e("invalid-regex", "match.path_regex does not compile"),
    _e("invalid-url", "a URL cannot be parsed or does not start with a literal scheme and host"),
    _e("insecure-url", "a URL is plain http (allowed only for loopback hosts outside production)"),
    _e("template-syntax", "a '{{…}}' template is malformed or unclosed"),
    _e(
        "unknown-template-namespace",
        "a template names something other than config, input or credentials",
    ),
    _e("unknown-template-variable", "a template names a variable that does not exist there"),
    _e("template-not-allowed", "a template's namespace is not available in that field"),
    _e("undeclared-required", "a schema requires a property it does not declare"),
    _e("invalid-header-name", "a header name is not an HTTP token"),
    _e("missing-reset-format", "signals.reset_header is set without signals.reset_format"),
    _e("invalid-retry", "retry.initial_delay_s is larger than retry.max_delay_s"),
    _e(
        "pagination-cursor-source",
        "a cursor pagination names neither or both of cursor_path and cursor_record_field",
    ),
    # warnings
    _w("deprecated-connector", "the connector is deprecated"),
    _w("missing-docs-url", "the definition names no docs_url"),
    _w("insecure-docs-url", "a documentation or source URL is plain http"),
    _w("policy-without-scope", "a policy has no scope, so one budget covers every credential"),
    _w("source-date-in-future", "source.as_of is later than today"),
    _w("optional-path-variable", "a path or base URL uses a variable its schema does not require"),
    _w("check-not-read-only", "the check operation is not a GET or HEAD"),
    _w("body-on-get", "a GET or HEAD operation has a body"),
    _w("id-filename-mismatch", "the file name is not the connector id"),
)


@dataclass(frozen=True)
class Finding:
    """One problem in one file: where it is, which code, what to do about it."""

    file: str
    line: int
    column: int
    pointer: str
    code: str
    message: str
    hint: str | None = None

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "pointer": self.pointer,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.code, self.pointer)


def escape_controls(text: str) -> str:
    """Control and format characters (ANSI escapes, bidi overrides) as ``\\uXXXX``."""
    if text.isprintable():
        return text
    return "".join(
        f"\\u{ord(ch):04x}"
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
        else ch
        for ch in text
    )
