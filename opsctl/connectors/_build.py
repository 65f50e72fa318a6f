"""Build the typed model (:mod:`opsctl.connectors.model`) from a validated document."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from opsctl.connectors.durations import parse_duration
from opsctl.connectors.model import (
    DEFAULT_MAX_PAGES,
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    CursorPagination,
    Definition,
    LinkHeaderPagination,
    NextUrlPagination,
    NoAuth,
    NoPagination,
    OAuth2Auth,
    OAuthRefresh,
    OffsetPagination,
    Operation,
    PagePagination,
    Pagination,
    Plan,
    PolicyMatch,
    PolicySource,
    RateLimitPolicy,
    RateLimits,
    RateLimitSignals,
    RetryPolicy,
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value)) if value else _EMPTY


def canonical_digest(document: Mapping[str, Any]) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def definition_from_json(
    document: Mapping[str, Any], *, source_file: Path | None = None
) -> Definition:
    """Build the model of a document the validator passed (it does not re-check anything)."""
    d = document
    default_pagination = _pagination(d.get("pagination"))
    operations = tuple(_operation(op, default_pagination) for op in d["operations"])
    return Definition(
        id=d["id"],
        version=d["version"],
        display_name=d["display_name"],
        release_stage=d["release_stage"],
        base_url=d["base_url"],
        auth=_auth(d["auth"]),
        operations=operations,
        check=d["check"],
        docs_url=d.get("docs_url"),
        description=d.get("description"),
        config_schema=_frozen(d.get("config_schema")),
        headers=_frozen(d.get("headers")),
        rate_limits=_rate_limits(d.get("rate_limits") or {}),
        retry=_retry(d.get("retry") or {}),
        pagination=default_pagination,
        digest=canonical_digest(d),
        source_file=source_file,
        document=_frozen(d),
    )


def _auth(a: Mapping[str, Any]) -> Auth:
    kind = a["type"]
    if kind == "api_key":
        return ApiKeyAuth(a["name"], a.get("in", "header"), a.get("prefix", ""))
    if kind == "basic":
        return BasicAuth()
    if kind == "bearer":
        return BearerAuth(a.get("header", "Authorization"), a.get("prefix", "Bearer "))
    if kind == "oauth2":
        refresh = a.get("refresh") or {}
        return OAuth2Auth(
            authorization_url=a["authorization_url"],
            token_url=a["token_url"],
            scopes=tuple(a["scopes"]),
            pkce=a.get("pkce", False),
            refresh=OAuthRefresh(refresh.get("enabled", True), refresh.get("margin_s", 60)),
            scope_separator=a.get("scope_separator", " "),
            client_auth=a.get("client_auth", "client_secret_basic"),
            authorize_params=_frozen(a.get("authorize_params")),
            token_params=_frozen(a.get("token_params")),
            revoke_url=a.get("revoke_url"),
            header=a.get("header", "Authorization"),
            prefix=a.get("prefix", "Bearer "),
        )
    return NoAuth()


def _policy(p: Mapping[str, Any]) -> RateLimitPolicy:
    source = p["source"]
    match = p.get("match") or {}
    window = p.get("window")
    return RateLimitPolicy(
        id=p["id"],
        kind=p["kind"],
        source=PolicySource(source["url"], date.fromisoformat(source["as_of"]), source.get("note")),
        scope=tuple(p.get("scope", ())),
        unit=p.get("unit", "requests"),
        cost=p.get("cost", 1),
        match=PolicyMatch(
            frozenset(match.get("methods", ())),
            match.get("path_regex"),
            frozenset(match.get("operations", ())),
        ),
        limit=p.get("limit"),
        window=window,
        window_s=parse_duration(window) if window else None,
        capacity=p.get("capacity"),
        refill_per_s=p.get("refill_per_s"),
        max_in_flight=p.get("max_in_flight"),
        description=p.get("description"),
    )


def _rate_limits(r: Mapping[str, Any]) -> RateLimits:
    s = r.get("signals") or {}
    signals = RateLimitSignals(
        throttle_statuses=tuple(s.get("throttle_statuses", (429,))),
        retry_after_header=s.get("retry_after_header", "Retry-After"),
        reset_header=s.get("reset_header"),
        reset_format=s.get("reset_format"),
        remaining_header=s.get("remaining_header"),
        limit_header=s.get("limit_header"),
    )
    plans = {
        name: Plan(
            name,
            MappingProxyType({k: _frozen(v) for k, v in plan["policies"].items()}),
            plan.get("description"),
        )
        for name, plan in (r.get("plans") or {}).items()
    }
    return RateLimits(tuple(_policy(p) for p in r.get("policies", ())), signals, _frozen(plans))


def _retry(r: Mapping[str, Any]) -> RetryPolicy:
    base = RetryPolicy()
    return RetryPolicy(
        max_attempts=r.get("max_attempts", base.max_attempts),
        statuses=tuple(r.get("statuses", base.statuses)),
        initial_delay_s=r.get("initial_delay_s", base.initial_delay_s),
        max_delay_s=r.get("max_delay_s", base.max_delay_s),
        multiplier=r.get("multiplier", base.multiplier),
        jitter=r.get("jitter", base.jitter),
        max_wait_s=r.get("max_wait_s", base.max_wait_s),
    )


def _pagination(p: Mapping[str, Any] | None) -> Pagination:
    if not p:
        return NoPagination()
    kind = p["type"]
    pages = p.get("max_pages", DEFAULT_MAX_PAGES)
    size_param, page_size = p.get("size_param"), p.get("page_size")
    if kind == "cursor":
        return CursorPagination(
            p["cursor_param"],
            p.get("cursor_path"),
            p.get("cursor_record_field"),
            p.get("has_more_path"),
            size_param,
            page_size,
            p.get("in", "query"),
            pages,
        )
    if kind == "offset":
        return OffsetPagination(
            p["offset_param"],
            p["size_param"],
            p["page_size"],
            p.get("total_path"),
            p.get("in", "query"),
            pages,
        )
    if kind == "page":
        return PagePagination(
            p["page_param"],
            size_param,
            page_size,
            p.get("start_page", 1),
            p.get("in", "query"),
            pages,
        )
    if kind == "link_header":
        return LinkHeaderPagination(size_param, page_size, pages)
    if kind == "next_url":
        return NextUrlPagination(p["next_url_path"], size_param, page_size, pages)
    return NoPagination()


def _operation(o: Mapping[str, Any], default: Pagination) -> Operation:
    if "pagination" in o:
        pagination = _pagination(o["pagination"])
    else:
        pagination = default if o.get("records_path") else NoPagination()
    return Operation(
        id=o["id"],
        method=o["method"],
        path=o["path"],
        records_path=o.get("records_path"),
        description=o.get("description"),
        input_schema=_frozen(o.get("input")),
        query=_frozen(o.get("query")),
        headers=_frozen(o.get("headers")),
        body=o.get("body"),
        body_format=o.get("body_format", "json"),
        pagination=pagination,
        costs=_frozen(o.get("costs")),
    )
