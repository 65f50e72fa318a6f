"""The typed model of a connector definition (format v1), built from a validated document.

Everything here is a frozen dataclass; the registry, the executor and the rate-limit
derivation read these and never the raw JSON. The validator builds a :class:`Definition` for a
document without errors (``FileReport.definition``; the loader collects them by id).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from opsctl.connectors.durations import parse_duration
from opsctl.connectors.templates import CREDENTIAL_FIELDS

SCHEMA_VERSION = "1"

ReleaseStage = Literal["experimental", "beta", "stable", "deprecated"]
RELEASE_STAGES: tuple[ReleaseStage, ...] = ("experimental", "beta", "stable", "deprecated")
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
PolicyKind = Literal["fixed_window", "sliding_window", "token_bucket", "concurrency"]
Scope = Literal["credential", "user", "account", "app", "project", "ip", "endpoint", "method"]
ResetFormat = Literal["delta_s", "epoch_s", "epoch_ms", "http_date", "iso8601"]
Unit = Literal["requests", "points"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


# --- auth --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoAuth:
    type: Literal["none"] = "none"


@dataclass(frozen=True)
class ApiKeyAuth:
    """The key goes in a header (``name: prefix + key``) or a query parameter ``name``."""

    name: str
    location: Literal["header", "query"] = "header"
    prefix: str = ""
    type: Literal["api_key"] = "api_key"


@dataclass(frozen=True)
class BasicAuth:
    type: Literal["basic"] = "basic"


@dataclass(frozen=True)
class BearerAuth:
    header: str = "Authorization"
    prefix: str = "Bearer "
    type: Literal["bearer"] = "bearer"


@dataclass(frozen=True)
class OAuthRefresh:
    """Refresh the access token ``margin_s`` before it expires (and on a 401)."""

    enabled: bool = True
    margin_s: int = 60


@dataclass(frozen=True)
class OAuth2Auth:
    """Authorization-code flow; the access token is sent as ``header: prefix + token``."""

    authorization_url: str
    token_url: str
    scopes: tuple[str, ...]
    pkce: bool = False
    refresh: OAuthRefresh = OAuthRefresh()
    scope_separator: str = " "
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    authorize_params: Mapping[str, str] = field(default_factory=_empty, hash=False)
    token_params: Mapping[str, str] = field(default_factory=_empty, hash=False)
    revoke_url: str | None = None
    header: str = "Authorization"
    prefix: str = "Bearer "
    type: Literal["oauth2"] = "oauth2"


Auth: TypeAlias = NoAuth | ApiKeyAuth | BasicAuth | BearerAuth | OAuth2Auth


def credential_fields(auth: Auth) -> tuple[str, ...]:
    """The ``{{credentials.*}}`` names this auth provides (oauth2 → ``access_token``)."""
    return CREDENTIAL_FIELDS[auth.type]


# --- rate limits -------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySource:
    """Where the vendor publishes the limit, and the date the figure was taken as true."""

    url: str
    as_of: date
    note: str | None = None


@dataclass(frozen=True)
class PolicyMatch:
    """Which requests a policy covers; every criterion given must hold, none given = all."""

    methods: frozenset[str] = frozenset()
    path_regex: str | None = None
    operations: frozenset[str] = frozenset()

    @cached_property
    def _compiled(self) -> re.Pattern[str] | None:
        return re.compile(self.path_regex) if self.path_regex else None

    def applies(self, *, method: str, path: str, operation_id: str | None = None) -> bool:
        """Whether a request (``path`` rendered, relative to the base URL) is covered."""
        if self.methods and method.upper() not in self.methods:
            return False
        if self.operations and operation_id not in self.operations:
            return False
        return self._compiled is None or self._compiled.search(path) is not None


@dataclass(frozen=True)
class RateLimitPolicy:
    """One vendor limit. Window kinds use ``limit``/``window``; token buckets ``capacity``/
    ``refill_per_s``; concurrency ``max_in_flight``. The others are ``None``.
    """

    id: str
    kind: PolicyKind
    source: PolicySource
    scope: tuple[Scope, ...] = ()
    unit: Unit = "requests"
    cost: float = 1.0
    match: PolicyMatch = PolicyMatch()
    limit: int | None = None
    window: str | None = None
    window_s: float | None = None
    capacity: float | None = None
    refill_per_s: float | None = None
    max_in_flight: int | None = None
    description: str | None = None


@dataclass(frozen=True)
class Plan:
    """A vendor plan (or mode) that changes some policies' figures, e.g. Shopify Plus."""

    name: str
    overrides: Mapping[str, Mapping[str, Any]] = field(hash=False)
    description: str | None = None


@dataclass(frozen=True)
class RateLimitSignals:
    """How the vendor says "slow down": statuses and the headers that tell for how long."""

    throttle_statuses: tuple[int, ...] = (429,)
    retry_after_header: str | None = "Retry-After"
    reset_header: str | None = None
    reset_format: ResetFormat | None = None
    remaining_header: str | None = None
    limit_header: str | None = None


@dataclass(frozen=True)
class RateLimits:
    policies: tuple[RateLimitPolicy, ...] = ()
    signals: RateLimitSignals = RateLimitSignals()
    plans: Mapping[str, Plan] = field(default_factory=_empty, hash=False)

    def for_plan(self, name: str | None) -> tuple[RateLimitPolicy, ...]:
        """The policies with a plan's overrides applied (``None``: the figures as written)."""
        if name is None:
            return self.policies
        plan = self.plans[name]
        out = []
        for policy in self.policies:
            changes = dict(plan.overrides.get(policy.id, {}))
            if "window" in changes:
                changes["window_s"] = parse_duration(changes["window"])
            out.append(replace(policy, **changes) if changes else policy)
        return tuple(out)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on these statuses with exponential backoff; past ``max_wait_s`` of waiting the
    job is rescheduled through the delayed set instead of holding a worker."""

    max_attempts: int = 5
    statuses: tuple[int, ...] = (429, 500, 502, 503, 504)
    initial_delay_s: float = 1.0
    max_delay_s: float = 60.0
    multiplier: float = 2.0
    jitter: bool = True
    max_wait_s: float = 30.0


# --- pagination --------------------------------------------------------------------------

DEFAULT_MAX_PAGES = 100


@dataclass(frozen=True)
class NoPagination:
    type: Literal["none"] = "none"


@dataclass(frozen=True)
class CursorPagination:
    """Send ``cursor_param``; take the next cursor from ``cursor_path`` in the body, or from
    field ``cursor_record_field`` of the last record (Stripe's ``starting_after``)."""

    cursor_param: str
    cursor_path: str | None = None
    cursor_record_field: str | None = None
    has_more_path: str | None = None
    size_param: str | None = None
    page_size: int | None = None
    location: Literal["query", "body"] = "query"
    max_pages: int = DEFAULT_MAX_PAGES
    type: Literal["cursor"] = "cursor"


@dataclass(frozen=True)
class OffsetPagination:
    offset_param: str
    size_param: str
    page_size: int
    total_path: str | None = None
    location: Literal["query", "body"] = "query"
    max_pages: int = DEFAULT_MAX_PAGES
    type: Literal["offset"] = "offset"


@dataclass(frozen=True)
class PagePagination:
    page_param: str
    size_param: str | None = None
    page_size: int | None = None
    start_page: int = 1
    location: Literal["query", "body"] = "query"
    max_pages: int = DEFAULT_MAX_PAGES
    type: Literal["page"] = "page"


@dataclass(frozen=True)
class LinkHeaderPagination:
    """Follow ``Link: <…>; rel="next"`` (RFC 8288) until there is none."""

    size_param: str | None = None
    page_size: int | None = None
    max_pages: int = DEFAULT_MAX_PAGES
    type: Literal["link_header"] = "link_header"


@dataclass(frozen=True)
class NextUrlPagination:
    """Follow the URL (absolute, or relative to the base URL's host) at ``next_url_path``."""

    next_url_path: str
    size_param: str | None = None
    page_size: int | None = None
    max_pages: int = DEFAULT_MAX_PAGES
    type: Literal["next_url"] = "next_url"


Pagination: TypeAlias = (
    NoPagination
    | CursorPagination
    | OffsetPagination
    | PagePagination
    | LinkHeaderPagination
    | NextUrlPagination
)


# --- operations and the definition -------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One HTTP call. ``path``, ``query``, ``headers`` and ``body`` may hold templates;
    ``pagination`` is already resolved (the operation's own, else the definition's default
    when ``records_path`` is set, else none)."""

    id: str
    method: HttpMethod
    path: str
    records_path: str | None = None
    description: str | None = None
    input_schema: Mapping[str, Any] = field(default_factory=_empty, hash=False)
    query: Mapping[str, str | int | float | bool] = field(default_factory=_empty, hash=False)
    headers: Mapping[str, str] = field(default_factory=_empty, hash=False)
    body: Any = field(default=None, hash=False)
    body_format: Literal["json", "form"] = "json"
    pagination: Pagination = NoPagination()
    costs: Mapping[str, float] = field(default_factory=_empty, hash=False)
    """Per-policy cost of one call, overriding the policy's own ``cost``."""

    @property
    def required_input(self) -> tuple[str, ...]:
        return tuple(self.input_schema.get("required", ()))


@dataclass(frozen=True)
class Definition:
    """A validated connector definition."""

    id: str
    version: str
    display_name: str
    release_stage: ReleaseStage
    base_url: str
    auth: Auth
    operations: tuple[Operation, ...]
    check: str
    docs_url: str | None = None
    description: str | None = None
    config_schema: Mapping[str, Any] = field(default_factory=_empty, hash=False)
    headers: Mapping[str, str] = field(default_factory=_empty, hash=False)
    rate_limits: RateLimits = RateLimits()
    retry: RetryPolicy = RetryPolicy()
    pagination: Pagination = NoPagination()
    digest: str = ""
    """SHA-256 of the document's canonical JSON: changes with content, not with formatting."""
    source_file: Path | None = None
    document: Mapping[str, Any] = field(
        default_factory=_empty, hash=False, repr=False, compare=False
    )

    @cached_property
    def operations_by_id(self) -> Mapping[str, Operation]:
        return MappingProxyType({op.id: op for op in self.operations})

    def operation(self, operation_id: str) -> Operation:
        """The operation with this id; ``KeyError`` when there is none."""
        return self.operations_by_id[operation_id]

    @property
    def check_operation(self) -> Operation:
        return self.operation(self.check)

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return credential_fields(self.auth)

    def policies_for(
        self, operation: Operation, path: str, *, plan: str | None = None
    ) -> tuple[RateLimitPolicy, ...]:
        """Every policy covering a call of ``operation`` at rendered ``path`` (all apply)."""
        return tuple(
            p
            for p in self.rate_limits.for_plan(plan)
            if p.match.applies(method=operation.method, path=path, operation_id=operation.id)
        )
