"""The checks a JSON Schema cannot express: references between parts, windows, dates, plans.

Single values (URLs, header names, templates) are checked by :mod:`._fields`.

Each check reads the document defensively (the schema may have found it malformed, and every
problem is reported in one run), skipping whatever has the wrong shape: the schema check has
already reported that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from opsctl.connectors._collect import Collector, brief, did_you_mean, show
from opsctl.connectors._fields import (
    Names,
    Options,
    as_dict,
    check_header_name,
    check_headers,
    check_json_templates,
    check_templates,
    check_url,
)
from opsctl.connectors._jsontext import join_pointer
from opsctl.connectors.durations import DurationError, parse_duration
from opsctl.connectors.templates import CREDENTIAL_FIELDS

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WINDOW_KINDS = {"fixed_window", "sliding_window"}
_KIND_FIELDS = {
    "fixed_window": {"limit", "window"},
    "sliding_window": {"limit", "window"},
    "token_bucket": {"capacity", "refill_per_s"},
    "concurrency": {"max_in_flight"},
}
_OVERRIDABLE = {"limit", "window", "capacity", "refill_per_s", "max_in_flight"}
_META = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def check_document(c: Collector, d: dict[str, Any], options: Options) -> None:
    """Run every semantic check over a document whose root is an object."""
    names = Names()
    config_schema = d.get("config_schema")
    if isinstance(config_schema, dict):
        names.config, names.config_required = _check_object_schema(
            c, "/config_schema", config_schema
        )
    else:
        names.config = set()
    auth = as_dict(d.get("auth"))
    auth_type = auth.get("type")
    if isinstance(auth_type, str) and auth_type in CREDENTIAL_FIELDS:
        names.auth_type = auth_type
        names.credentials = set(CREDENTIAL_FIELDS[auth_type])

    _check_identity(c, d, options)
    check_url(c, "/base_url", d.get("base_url"), options, names, api=True)
    _check_auth(c, auth, options, names)
    check_headers(c, "/headers", d.get("headers"), names, {"config", "credentials"})
    op_ids = _check_operations(c, d, names)
    policy_kinds = _check_rate_limits(c, as_dict(d.get("rate_limits")), op_ids, options)
    _check_costs(c, d, policy_kinds)
    _check_retry(c, as_dict(d.get("retry")))
    _check_pagination(c, "/pagination", d.get("pagination"))
    _check_check(c, d, op_ids)


def _check_identity(c: Collector, d: dict[str, Any], options: Options) -> None:
    if d.get("release_stage") == "deprecated":
        c.add(
            "deprecated-connector",
            "/release_stage",
            "the connector is deprecated; it will not be promoted and should be replaced",
        )
    if "docs_url" not in d:
        c.add("missing-docs-url", "", "no docs_url: link the vendor's API documentation")
    else:
        check_url(c, "/docs_url", d.get("docs_url"), options, None, api=False)
    connector_id = d.get("id")
    if (
        options.file_stem is not None
        and isinstance(connector_id, str)
        and connector_id != options.file_stem
    ):
        c.add(
            "id-filename-mismatch",
            "/id",
            f"id {show(connector_id)} differs from the file name {show(options.file_stem)}",
        )


def _check_check(c: Collector, d: dict[str, Any], op_ids: dict[str, int]) -> None:
    check = d.get("check")
    if not isinstance(check, str):
        return
    if check not in op_ids:
        if op_ids:
            c.add(
                "unknown-check-operation",
                "/check",
                f"check names operation {show(check)}, which is not defined",
                hint=did_you_mean(check, op_ids),
            )
        return
    index = op_ids[check]
    op = d["operations"][index]
    required = as_dict(op.get("input")).get("required")
    if isinstance(required, list) and required:
        c.add(
            "check-needs-input",
            "/check",
            f"the check operation {show(check)} requires input "
            f"({', '.join(show(r) for r in required)}); it must run without any",
        )
    if op.get("method") in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        c.add(
            "check-not-read-only",
            "/check",
            f"the check operation {show(check)} is a {op.get('method')}; a check should only read",
        )


# --- auth, schemas -----------------------------------------------------------------------


def _check_auth(c: Collector, auth: dict[str, Any], options: Options, names: Names) -> None:
    kind = auth.get("type")
    if kind == "oauth2":
        for key in ("authorization_url", "token_url", "revoke_url"):
            check_url(c, f"/auth/{key}", auth.get(key), options, names, api=True)
    if kind in ("bearer", "oauth2"):
        check_header_name(c, "/auth/header", auth.get("header"))
    if kind == "api_key" and auth.get("in", "header") == "header":
        check_header_name(c, "/auth/name", auth.get("name"))


@lru_cache(maxsize=4096)
def _schema_problems(schema_json: str) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    """Metaschema errors of one property schema; cached, as the same few shapes recur."""
    return tuple(
        (tuple(error.absolute_path), brief(error.message))
        for error in _META.iter_errors(json.loads(schema_json))
    )


def _check_object_schema(
    c: Collector, pointer: str, schema: dict[str, Any]
) -> tuple[set[str], set[str]]:
    """Each property is a valid JSON Schema, every required name is declared; returns the
    declared and the required names."""
    properties = as_dict(schema.get("properties"))
    for name, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        for path, message in _schema_problems(json.dumps(sub, sort_keys=True)):
            where = join_pointer(join_pointer(pointer, "properties", name), *path)
            c.add("invalid-input-schema", where, f"not a valid JSON Schema: {message}")
    required = schema.get("required")
    declared = set(properties)
    needed: set[str] = set()
    for index, name in enumerate(required if isinstance(required, list) else ()):
        if not isinstance(name, str):
            continue
        needed.add(name)
        if name not in declared:
            c.add(
                "undeclared-required",
                join_pointer(pointer, "required", index),
                f"{show(name)} is required but not declared in properties",
                hint=did_you_mean(name, declared),
            )
    return declared, needed


# --- operations --------------------------------------------------------------------------


def _check_operations(c: Collector, d: dict[str, Any], names: Names) -> dict[str, int]:
    op_ids: dict[str, int] = {}
    for index, op in _items(d.get("operations")):
        pointer = f"/operations/{index}"
        op_id = op.get("id")
        if isinstance(op_id, str):
            if op_id in op_ids:
                c.add(
                    "duplicate-operation-id",
                    f"{pointer}/id",
                    f"operation id {show(op_id)} is already used by /operations/{op_ids[op_id]}",
                )
            else:
                op_ids[op_id] = index
        op_names = Names(
            config=names.config,
            credentials=names.credentials,
            config_required=names.config_required,
            auth_type=names.auth_type,
        )
        input_schema = op.get("input")
        if isinstance(input_schema, dict):
            op_names.input, op_names.input_required = _check_object_schema(
                c, f"{pointer}/input", input_schema
            )
        elif input_schema is None:
            op_names.input = set()
        path = op.get("path")
        if isinstance(path, str):
            check_templates(
                c, f"{pointer}/path", path, op_names, {"config", "input"}, required_names=True
            )
        every = {"config", "input", "credentials"}
        for key, value in as_dict(op.get("query")).items():
            if isinstance(value, str):
                check_templates(c, join_pointer(pointer, "query", key), value, op_names, every)
        check_headers(c, f"{pointer}/headers", op.get("headers"), op_names, every)
        if "body" in op:
            check_json_templates(c, f"{pointer}/body", op["body"], op_names, every)
            if op.get("method") in ("GET", "HEAD"):
                c.add("body-on-get", f"{pointer}/body", f"a {op['method']} request sends no body")
        _check_pagination(c, f"{pointer}/pagination", op.get("pagination"))
    return op_ids


def _check_pagination(c: Collector, pointer: str, pagination: Any) -> None:
    p = as_dict(pagination)
    if p.get("type") != "cursor":
        return
    sources = [k for k in ("cursor_path", "cursor_record_field") if k in p]
    if len(sources) != 1:
        c.add(
            "pagination-cursor-source",
            pointer,
            "cursor pagination needs exactly one of cursor_path (the next cursor in the body) "
            "and cursor_record_field (a field of the last record)",
        )


def _check_costs(c: Collector, d: dict[str, Any], policies: dict[str, str]) -> None:
    for index, op in _items(d.get("operations")):
        for policy_id in as_dict(op.get("costs")):
            if policy_id not in policies:
                c.add(
                    "unknown-policy-reference",
                    join_pointer(f"/operations/{index}/costs", policy_id),
                    f"costs names policy {show(policy_id)}, which is not defined",
                    hint=did_you_mean(policy_id, policies),
                    at_key=True,
                )


# --- rate limits, retry ------------------------------------------------------------------


def _check_rate_limits(
    c: Collector, limits: dict[str, Any], op_ids: dict[str, int], options: Options
) -> dict[str, str]:
    """Check policies, signals and plans; returns each policy id's kind."""
    kinds: dict[str, str] = {}
    for index, policy in _items(limits.get("policies")):
        pointer = f"/rate_limits/policies/{index}"
        policy_id = policy.get("id")
        if isinstance(policy_id, str):
            if policy_id in kinds:
                c.add(
                    "duplicate-policy-id",
                    f"{pointer}/id",
                    f"policy id {show(policy_id)} is already used",
                )
            elif policy.get("kind") in _KIND_FIELDS:
                kinds[policy_id] = policy["kind"]
            else:
                kinds[policy_id] = ""  # an unknown kind is reported by the schema
        if policy.get("kind") in _WINDOW_KINDS:
            _check_duration(c, f"{pointer}/window", policy.get("window"))
        if not policy.get("scope"):
            c.add(
                "policy-without-scope",
                pointer,
                "the policy has no scope: one budget is shared by every credential and account",
                hint='add e.g. "scope": ["credential"]',
            )
        source = as_dict(policy.get("source"))
        check_url(c, f"{pointer}/source/url", source.get("url"), options, None, api=False)
        _check_date(c, f"{pointer}/source/as_of", source.get("as_of"), options.today)
        match = as_dict(policy.get("match"))
        regex = match.get("path_regex")
        if isinstance(regex, str):
            try:
                re.compile(regex)
            except re.error as exc:
                c.add(
                    "invalid-regex",
                    f"{pointer}/match/path_regex",
                    f"path_regex does not compile: {exc}",
                )
        operations = match.get("operations")
        for i, op_id in enumerate(operations if isinstance(operations, list) else ()):
            if isinstance(op_id, str) and op_ids and op_id not in op_ids:
                c.add(
                    "unknown-operation-reference",
                    f"{pointer}/match/operations/{i}",
                    f"match names operation {show(op_id)}, which is not defined",
                    hint=did_you_mean(op_id, op_ids),
                )
    signals = as_dict(limits.get("signals"))
    if "reset_header" in signals and "reset_format" not in signals:
        c.add(
            "missing-reset-format",
            "/rate_limits/signals",
            "reset_header is set but reset_format is not",
            hint="one of delta_s, epoch_s, epoch_ms, http_date, iso8601",
        )
    for key in ("retry_after_header", "reset_header", "remaining_header", "limit_header"):
        check_header_name(c, f"/rate_limits/signals/{key}", signals.get(key))
    for plan_name, plan in as_dict(limits.get("plans")).items():
        _check_plan(c, join_pointer("/rate_limits/plans", plan_name), as_dict(plan), kinds)
    return kinds


def _check_plan(c: Collector, pointer: str, plan: dict[str, Any], kinds: dict[str, str]) -> None:
    for policy_id, override in as_dict(plan.get("policies")).items():
        member = join_pointer(pointer, "policies", policy_id)
        if policy_id not in kinds:
            c.add(
                "unknown-policy-reference",
                member,
                f"the plan overrides policy {show(policy_id)}, which is not defined",
                hint=did_you_mean(policy_id, kinds),
                at_key=True,
            )
            continue
        if not kinds[policy_id]:
            continue
        fields = _KIND_FIELDS[kinds[policy_id]]
        for key in as_dict(override):
            if key in _OVERRIDABLE and key not in fields:  # unknown keys: the schema's
                c.add(
                    "plan-override-not-applicable",
                    join_pointer(member, key),
                    f"policy {show(policy_id)} is a {kinds[policy_id]}, which has no {show(key)}",
                    hint=f"it has {', '.join(sorted(fields))}",
                    at_key=True,
                )
        if "window" in as_dict(override):
            _check_duration(c, join_pointer(member, "window"), override["window"])


def _check_duration(c: Collector, pointer: str, value: Any) -> None:
    if not isinstance(value, str):
        return
    try:
        parse_duration(value)
    except DurationError as exc:
        c.add("invalid-duration", pointer, str(exc))


def _check_date(c: Collector, pointer: str, value: Any, today: date | None) -> None:
    if not isinstance(value, str):
        return
    try:
        if not _DATE.match(value):
            raise ValueError
        as_of = date.fromisoformat(value)
    except ValueError:
        c.add("invalid-date", pointer, f"{show(value)} is not a date written YYYY-MM-DD")
        return
    if today is not None and as_of > today:
        c.add("source-date-in-future", pointer, f"{value} is later than today ({today})")


def _check_retry(c: Collector, retry: dict[str, Any]) -> None:
    first, most = retry.get("initial_delay_s"), retry.get("max_delay_s")
    if (
        isinstance(first, int | float)
        and isinstance(most, int | float)
        and not isinstance(first, bool)
        and not isinstance(most, bool)
        and first > most
    ):
        c.add(
            "invalid-retry",
            "/retry/initial_delay_s",
            f"initial_delay_s ({first}) is larger than max_delay_s ({most})",
        )
