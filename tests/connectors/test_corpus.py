"""The corpus of invalid definitions: each file must produce exactly the errors listed here."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsctl.connectors import CODES, validate_file

INVALID = Path(__file__).parent / "invalid"

# file stem → the (code, JSON pointer) of every error it must produce, and nothing else.
CORPUS: dict[str, set[tuple[str, str]]] = {
    # reading the text
    "empty": {("empty-file", "")},
    "whitespace-only": {("empty-file", "")},
    "binary": {("not-text", "")},
    "latin1": {("not-text", "")},
    "syntax-trailing-comma": {("invalid-json", "")},
    "syntax-unclosed-string": {("invalid-json", "")},
    "syntax-single-quotes": {("invalid-json", "")},
    "syntax-nan": {("invalid-json", "")},
    "duplicate-key": {("duplicate-key", "/id")},
    "not-an-object": {("wrong-type", "")},
    # the schema: keys, types, forms
    "typo-top-level-key": {("unknown-key", "/dispaly_name"), ("missing-key", "")},
    "typo-auth-key": {("unknown-key", "/auth/scope"), ("incomplete-oauth", "/auth")},
    "wrong-type-version": {("wrong-type", "/version")},
    "bad-semver": {("invalid-semver", "/version")},
    "schema-version-2": {("unsupported-schema-version", "/schema_version")},
    "release-stage-typo": {("invalid-release-stage", "/release_stage")},
    "bad-connector-id": {("invalid-id", "/id")},
    "auth-type-unknown": {("unknown-auth-type", "/auth/type")},
    "auth-type-missing": {("missing-key", "/auth")},
    "oauth-missing-token-url": {("incomplete-oauth", "/auth")},
    "api-key-auth-without-name": {("missing-key", "/auth")},
    "basic-auth-with-token": {("unknown-key", "/auth/token")},
    "scopes-not-a-list": {("wrong-type", "/auth/scopes")},
    "scope-with-space": {("invalid-scope-token", "/auth/scopes/0")},
    "operations-empty": {("empty-value", "/operations")},
    "operation-method-invalid": {("invalid-method", "/operations/0/method")},
    "operation-path-relative": {("invalid-path", "/operations/0/path")},
    "records-path-invalid": {("invalid-records-path", "/operations/2/records_path")},
    "policy-kind-unknown": {("unknown-policy-kind", "/rate_limits/policies/0/kind")},
    "policy-source-missing": {("missing-source", "/rate_limits/policies/0")},
    "policy-source-as-of-missing": {("missing-source", "/rate_limits/policies/0/source")},
    "policy-limit-zero": {("not-positive", "/rate_limits/policies/0/limit")},
    "policy-capacity-negative": {("not-positive", "/rate_limits/policies/1/capacity")},
    "policy-bucket-missing-refill": {("missing-key", "/rate_limits/policies/1")},
    "policy-bucket-with-window": {("unknown-key", "/rate_limits/policies/1/window")},
    "policy-scope-unknown": {("unknown-scope", "/rate_limits/policies/0/scope/0")},
    "reset-format-invalid": {("invalid-reset-format", "/rate_limits/signals/reset_format")},
    "throttle-status-not-an-error": {("out-of-range", "/rate_limits/signals/throttle_statuses/0")},
    "pagination-type-unknown": {("unknown-pagination-type", "/pagination/type")},
    "retry-max-attempts-zero": {("out-of-range", "/retry/max_attempts")},
    # meaning: references, durations, URLs, templates
    "oauth-http-token-url": {("insecure-url", "/auth/token_url")},
    "base-url-http": {("insecure-url", "/base_url")},
    "base-url-relative": {("invalid-url", "/base_url")},
    "base-url-credentials": {("template-not-allowed", "/base_url")},
    "base-url-unknown-config": {("unknown-template-variable", "/base_url")},
    "template-unclosed": {("template-syntax", "/operations/1/path")},
    "template-unknown-namespace": {("unknown-template-namespace", "/operations/2/query/color")},
    "template-unknown-input": {("unknown-template-variable", "/operations/1/path")},
    "template-unknown-credential": {
        ("unknown-template-variable", "/operations/2/headers/Authorization-Extra")
    },
    "template-in-body-unknown": {
        ("unknown-template-variable", "/operations/3/body/filter/0/value")
    },
    "duplicate-operation-id": {("duplicate-operation-id", "/operations/2/id")},
    "check-unknown-operation": {("unknown-check-operation", "/check")},
    "check-needs-input": {("check-needs-input", "/check")},
    "policy-as-of-not-a-date": {("invalid-date", "/rate_limits/policies/0/source/as_of")},
    "policy-window-not-iso": {("invalid-duration", "/rate_limits/policies/0/window")},
    "policy-window-zero": {("invalid-duration", "/rate_limits/policies/0/window")},
    "policy-window-months": {("invalid-duration", "/rate_limits/policies/0/window")},
    "policy-path-regex-broken": {("invalid-regex", "/rate_limits/policies/1/match/path_regex")},
    "policy-match-unknown-operation": {
        ("unknown-operation-reference", "/rate_limits/policies/1/match/operations/0")
    },
    "policy-duplicate-id": {("duplicate-policy-id", "/rate_limits/policies/1/id")},
    "reset-header-without-format": {("missing-reset-format", "/rate_limits/signals")},
    "plan-unknown-policy": {("unknown-policy-reference", "/rate_limits/plans/pro/policies/burts")},
    "plan-override-not-applicable": {
        ("plan-override-not-applicable", "/rate_limits/plans/pro/policies/burst/capacity")
    },
    "costs-unknown-policy": {("unknown-policy-reference", "/operations/3/costs/buckett")},
    "pagination-cursor-two-sources": {("pagination-cursor-source", "/pagination")},
    "config-required-undeclared": {("undeclared-required", "/config_schema/required/1")},
    "input-schema-invalid": {("invalid-input-schema", "/operations/1/input/properties/id/type")},
    "header-name-invalid": {("invalid-header-name", "/headers/X Acme Team")},
    "retry-initial-above-max": {("invalid-retry", "/retry/initial_delay_s")},
}

# Positions an editor would jump to: (file stem, code) → (line, column).
POSITIONS: dict[tuple[str, str], tuple[int, int]] = {
    ("syntax-trailing-comma", "invalid-json"): (212, 1),
    ("syntax-unclosed-string", "invalid-json"): (3, 14),
    ("syntax-single-quotes", "invalid-json"): (2, 3),
    ("syntax-nan", "invalid-json"): (3, 12),
    ("latin1", "not-text"): (2, 23),
    ("duplicate-key", "duplicate-key"): (4, 3),
    ("typo-top-level-key", "unknown-key"): (5, 3),
    ("auth-type-unknown", "unknown-auth-type"): (34, 13),
    ("policy-window-zero", "invalid-duration"): (53, 19),
    ("template-unclosed", "template-syntax"): (135, 23),
    ("base-url-unknown-config", "unknown-template-variable"): (9, 24),
    ("check-unknown-operation", "unknown-check-operation"): (211, 12),
}

HINTS: dict[tuple[str, str], str] = {
    ("typo-top-level-key", "unknown-key"): 'did you mean "display_name"?',
    ("typo-auth-key", "unknown-key"): 'did you mean "scopes"?',
    ("release-stage-typo", "invalid-release-stage"): 'did you mean "stable"?',
    ("auth-type-unknown", "unknown-auth-type"): 'did you mean "oauth2"?',
    ("base-url-unknown-config", "unknown-template-variable"): 'did you mean "region"?',
    ("check-unknown-operation", "unknown-check-operation"): 'did you mean "get_me"?',
    ("policy-match-unknown-operation", "unknown-operation-reference"): (
        'did you mean "search_items"?'
    ),
    ("plan-unknown-policy", "unknown-policy-reference"): 'did you mean "burst"?',
    ("costs-unknown-policy", "unknown-policy-reference"): 'did you mean "bucket"?',
    ("template-in-body-unknown", "unknown-template-variable"): 'did you mean "color"?',
    ("pagination-type-unknown", "unknown-pagination-type"): 'did you mean "cursor"?',
}


def test_the_corpus_is_large_and_complete() -> None:
    files = {p.stem for p in INVALID.glob("*.json")}
    assert len(CORPUS) >= 40
    assert files == set(CORPUS), "every corpus file needs an expectation, and vice versa"


@pytest.mark.parametrize("stem", sorted(CORPUS))
def test_invalid_definition_reports_exactly_its_errors(stem: str) -> None:
    report = validate_file(INVALID / f"{stem}.json")
    assert report.definition is None and not report.ok
    got = {(f.code, f.pointer) for f in report.errors}
    assert got == CORPUS[stem], [str(f) for f in report.findings]
    for finding in report.findings:
        assert finding.code in CODES
        assert finding.line >= 1 and finding.column >= 1
        assert finding.file.endswith(f"{stem}.json")
        assert finding.message and finding.message.isprintable()


@pytest.mark.parametrize(("stem", "code"), sorted(POSITIONS))
def test_findings_point_at_line_and_column(stem: str, code: str) -> None:
    report = validate_file(INVALID / f"{stem}.json")
    where = [(f.line, f.column) for f in report.errors if f.code == code]
    assert where == [POSITIONS[stem, code]]


@pytest.mark.parametrize(("stem", "code"), sorted(HINTS))
def test_unknown_names_get_a_did_you_mean_hint(stem: str, code: str) -> None:
    report = validate_file(INVALID / f"{stem}.json")
    hints = [f.hint for f in report.errors if f.code == code]
    assert hints == [HINTS[stem, code]]
