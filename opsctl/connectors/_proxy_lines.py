"""Reverse-proxy lines for derived limits: nginx ``limit_req``/``limit_conn``, envoy
``local_ratelimit``, each replica given ``1/M`` of the fleet's figures (docs/connectors.md).

nginx keys a zone on the credential header when the vendor counts per credential, user or
account, and on a constant, the connector id, for app, project or ip scopes (one budget for all
of the connector's traffic, stricter than the vendor's). Never on ``$server_name``: it is empty
where no ``server_name`` is set, and nginx does not count a request whose key is empty. That
rule is put to use for a policy covering some requests only: a ``map`` gives every other
request an empty key. Envoy's local rate limit keeps one bucket per listener, so it cannot
split by credential or by request.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opsctl.connectors.model import Auth, Definition, RateLimitPolicy
from opsctl.connectors.ratelimits import (
    SAFETY_FACTOR,
    LimitWarning,
    ProxyLines,
    concurrency_cap,
    exact,
    human_duration,
    nginx_rate_per_minute,
    proxy_burst,
)

if TYPE_CHECKING:
    from opsctl.connectors.ratelimits import DerivedPolicy, RateLimitReport, Topology

NGINX_ZONE_SIZE = "10m"
ENVOY_MIN_FILL_MS = 50
"""Envoy refuses a local rate limit fill interval under 50 ms."""
LONG_WINDOW_S = 3_600.0
"""Windows longer than this outlive a proxy's memory (reloads, restarts) and its clock."""
_CREDENTIAL_SCOPES = frozenset({"credential", "user", "account"})
_TEMPLATE = re.compile(r"\{\{.*?\}\}")
_LOCAL_RATELIMIT = (
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
)


def credential_key(auth: Auth) -> str | None:
    """The nginx variable holding the credential the worker sends, if the proxy can see one."""
    if auth.type in ("oauth2", "bearer"):
        return _header_variable(auth.header)
    if auth.type == "basic":
        return "$http_authorization"
    if auth.type == "api_key":
        if auth.location == "query":
            return f"$arg_{auth.name}"
        return _header_variable(auth.name)
    return None


def _header_variable(header: str) -> str:
    return "$http_" + header.lower().replace("-", "_")


def _variable(name: str) -> str:
    return "rl_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _nginx_quote(text: str) -> str:
    """A double-quoted nginx string that nginx reads back as ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _template_regex(text: str) -> str:
    """A path template as a regex: literal parts escaped, each ``{{…}}`` one path segment."""
    parts = _TEMPLATE.split(text)
    return "[^/]+".join(re.escape(part) for part in parts)


def request_patterns(
    definition: Definition, policy: RateLimitPolicy
) -> tuple[list[str] | None, bool]:
    """Regexes over nginx's ``"$request_method $uri"`` for the requests a policy covers.

    ``None`` means every request. The flag is true when the path regex could not be carried
    over exactly and the policy is applied to every request of its methods instead (stricter).
    """
    from opsctl.connectors.ratelimits import covered_operations

    match = policy.match
    if not (match.methods or match.path_regex or match.operations):
        return None, False
    base = _template_regex(urlsplit(definition.base_url).path.rstrip("/"))
    if match.operations:
        patterns = sorted(
            {
                f"^{op.method} {base}{_template_regex(op.path)}$"
                for op in covered_operations(definition, policy)
            }
        )
        return patterns, False
    methods = f"(?:{'|'.join(sorted(match.methods))})" if match.methods else "[A-Z]+"
    regex = match.path_regex
    if regex is None:
        return [f"^{methods} "], False
    if regex.startswith("^") and "|" not in regex:
        return [f"^{methods} {base}{regex[1:]}"], False
    if "^" not in regex and "|" not in regex:
        return [f"^{methods} .*{regex}"], False
    return [f"^{methods} "], True


def proxy_lines(
    definition: Definition, policy: RateLimitPolicy, derived: DerivedPolicy, topology: Topology
) -> tuple[ProxyLines | None, tuple[LimitWarning, ...]]:
    """The lines for ``topology.proxy`` and the warnings on what the proxy cannot keep."""
    if topology.proxy == "envoy":
        return _envoy(definition, policy, derived, topology)
    return _nginx(definition, policy, derived, topology)


def _scope_warnings(
    definition: Definition, policy: RateLimitPolicy, key: str
) -> list[LimitWarning]:
    scopes = set(policy.scope)
    out: list[LimitWarning] = []
    if scopes & _CREDENTIAL_SCOPES and not key.startswith("$"):
        out.append(
            LimitWarning(
                "proxy-no-credential",
                "proxy",
                f"the vendor counts per {', '.join(policy.scope)} but {definition.id} sends no "
                f"credential the proxy can read: the zone keys on the constant {key}, one budget "
                "for every connection",
            )
        )
    elif "user" in scopes and "credential" not in scopes:
        out.append(
            LimitWarning(
                "proxy-user-scope",
                "proxy",
                f"the vendor counts per user; the proxy can tell users apart only by {key}: "
                "connections of one user with different tokens share the vendor's budget but "
                "not the proxy's (send a header naming the user and key on it)",
            )
        )
    return out


def _long_window(policy: RateLimitPolicy, how: str) -> list[LimitWarning]:
    if policy.window_s is None or policy.window_s <= LONG_WINDOW_S:
        return []
    window = human_duration(policy.window_s)
    return [
        LimitWarning(
            "proxy-long-window",
            "proxy",
            f"a budget per {window}: the proxy holds it only as {how}, forgets its count on "
            f"every reload or restart and does not know when the vendor's {window} starts; "
            "only the shared limiter keeps it",
        )
    ]


def _over_limit(kind: str, replicas: int, admitted: int, budget: int, within: str) -> LimitWarning:
    return LimitWarning(
        "proxy-over-limit",
        "proxy",
        f"{replicas} {kind} replica(s) may let {admitted:,} requests through {within}, over the "
        f"vendor's {budget:,}: run fewer replicas or rely on the shared limiter",
    )


def _nginx(
    definition: Definition, policy: RateLimitPolicy, derived: DerivedPolicy, topology: Topology
) -> tuple[ProxyLines, tuple[LimitWarning, ...]]:
    m = topology.proxy_replicas
    name = f"{definition.id}_{policy.id}"
    everything = _nginx_quote(definition.id)
    base_key = everything
    if set(policy.scope) & _CREDENTIAL_SCOPES:
        base_key = credential_key(definition.auth) or everything
    warnings = _scope_warnings(definition, policy, base_key)
    patterns, approximate = request_patterns(definition, policy)
    declare: list[str] = []
    key = base_key
    if approximate:
        warnings.append(
            LimitWarning(
                "proxy-match-approximate",
                "proxy",
                f"path_regex {policy.match.path_regex!r} cannot be carried into an nginx map "
                "exactly: the zone counts every request of the policy's methods (stricter)",
            )
        )
    if patterns is not None:
        if not patterns:
            return ProxyLines("nginx", name, None, (f"# {name}: covers no operation",)), tuple(
                warnings
            )
        key = "$" + _variable(name)
        declare += [
            f'map "$request_method $uri" {key} {{',
            '    default "";',
            *(f"    {_nginx_quote('~' + p)} {base_key};" for p in patterns),
            "}",
        ]

    if derived.kind == "concurrency":
        assert policy.max_in_flight is not None
        per_replica = concurrency_cap(policy.max_in_flight, m)
        if per_replica == 0:
            warnings.append(
                LimitWarning(
                    "proxy-concurrency-zero",
                    "proxy",
                    f"{float(SAFETY_FACTOR * policy.max_in_flight):g} in flight split among {m} "
                    "proxy replicas rounds to 0; the lines are left out",
                )
            )
            return ProxyLines("nginx", name, key, (f"# {name}: under one in flight a replica",)), (
                tuple(warnings)
            )
        declare.append(f"limit_conn_zone {key} zone={name}:{NGINX_ZONE_SIZE};")
        return ProxyLines(
            "nginx", name, key, tuple(declare), (f"limit_conn {name} {per_replica};",)
        ), tuple(warnings)

    assert derived.fleet_rate is not None and derived.fleet_burst is not None
    rate = _fleet_rate(policy, derived)
    per_minute = nginx_rate_per_minute(rate, m)
    burst = proxy_burst(derived.fleet_burst, m)
    if per_minute < 1:
        warnings.append(
            LimitWarning(
                "proxy-rate-below-one-per-minute",
                "proxy",
                f"nginx counts whole requests a minute: {float(60 * rate / m):.3g} a minute per "
                "replica rounds to 0, so the lines are left out; only the shared limiter keeps "
                "this limit",
            )
        )
        comment = f"# {name}: under one request a minute per replica; nginx cannot express it"
        return ProxyLines("nginx", name, key, (comment,)), tuple(warnings)
    declare.append(f"limit_req_zone {key} zone={name}:{NGINX_ZONE_SIZE} rate={per_minute}r/m;")
    warnings += _long_window(policy, f"an even {per_minute}r/m with a burst of {burst}")
    # nginx admits one request beyond its burst, then one per 60/rate seconds.
    if policy.kind == "token_bucket":
        let_through = m * (1 + burst)
        budget = _bucket_requests(policy, derived)
        if let_through > budget:
            warnings.append(_over_limit("nginx", m, let_through, budget, "at once"))
    elif policy.window_s is not None and derived.requests_per_window is not None:
        window = exact(policy.window_s)
        let_through = m * (1 + burst + math.floor(per_minute * window / 60))
        if let_through > derived.requests_per_window:
            within = f"in {human_duration(policy.window_s)}"
            warnings.append(
                _over_limit("nginx", m, let_through, derived.requests_per_window, within)
            )
    # nginx refuses burst=0; without a burst it refuses every request over the rate.
    apply = (
        f"limit_req zone={name} burst={burst} nodelay;" if burst else f"limit_req zone={name};",
    )
    return ProxyLines("nginx", name, key, tuple(declare), apply), tuple(warnings)


def _fleet_rate(policy: RateLimitPolicy, derived: DerivedPolicy) -> Fraction:
    """The fleet rate as an exact fraction (recomputed: the float on ``derived`` is rounded)."""
    from opsctl.connectors.ratelimits import requests_admitted, token_bucket, window_bucket

    cost = exact(derived.cost)
    if policy.kind == "token_bucket":
        assert policy.capacity is not None and policy.refill_per_s is not None
        return token_bucket(policy.capacity, exact(policy.refill_per_s) / cost)[1]
    assert policy.limit is not None and policy.window_s is not None
    return window_bucket(requests_admitted(policy.limit, cost), policy.window_s)[1]


def _bucket_requests(policy: RateLimitPolicy, derived: DerivedPolicy) -> int:
    from opsctl.connectors.ratelimits import requests_admitted

    assert policy.capacity is not None
    return requests_admitted(policy.capacity, derived.cost)


def _envoy(
    definition: Definition, policy: RateLimitPolicy, derived: DerivedPolicy, topology: Topology
) -> tuple[ProxyLines | None, tuple[LimitWarning, ...]]:
    m = topology.proxy_replicas
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{definition.id}_{policy.id}")
    warnings: list[LimitWarning] = []
    if set(policy.scope) & _CREDENTIAL_SCOPES:
        warnings.append(
            LimitWarning(
                "proxy-one-bucket",
                "proxy",
                f"the vendor counts per {', '.join(policy.scope)}; envoy's local rate limit "
                "keeps one bucket for the listener, so every connection shares the budget of one",
            )
        )
    if derived.kind == "concurrency":
        assert policy.max_in_flight is not None
        per_replica = concurrency_cap(policy.max_in_flight, m)
        warnings.append(
            LimitWarning(
                "proxy-concurrency-not-expressed",
                "proxy",
                "a rate limiter cannot cap requests in flight; set circuit_breakers "
                f"max_requests: {per_replica} on the {definition.id} cluster of each replica, "
                "or rely on the shared limiter",
            )
        )
        return None, tuple(warnings)
    partial = bool(policy.match.methods or policy.match.path_regex or policy.match.operations)
    if partial:
        warnings.append(
            LimitWarning(
                "proxy-match-not-expressed",
                "proxy",
                "the policy covers some requests only and a local_ratelimit filter counts every "
                "request of its listener: the filter is left out (give a route matching those "
                "requests a typed_per_filter_config with the token bucket shown)",
            )
        )
    assert derived.fleet_burst is not None
    rate = _fleet_rate(policy, derived) / m
    if rate <= 0:
        return None, tuple(warnings)
    tokens_per_fill = max(1, math.ceil(rate * ENVOY_MIN_FILL_MS / 1000))
    fill_ms = math.ceil(1000 * tokens_per_fill / rate)
    max_tokens = max(1, proxy_burst(derived.fleet_burst, m), tokens_per_fill)
    fill = f"{fill_ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    warnings += _long_window(
        policy, f"{tokens_per_fill} token(s) every {fill} with a bucket of {max_tokens}"
    )
    if policy.kind == "token_bucket":
        let_through = m * (max_tokens + tokens_per_fill)
        budget = _bucket_requests(policy, derived)
        if let_through > budget:
            warnings.append(_over_limit("envoy", m, let_through, budget, "at once"))
    elif policy.window_s is not None and derived.requests_per_window is not None:
        fills = math.floor(exact(policy.window_s) * 1000 / fill_ms) + 1
        let_through = m * (max_tokens + tokens_per_fill * fills)
        if let_through > derived.requests_per_window:
            within = f"in {human_duration(policy.window_s)}"
            warnings.append(
                _over_limit("envoy", m, let_through, derived.requests_per_window, within)
            )
    percent = "{numerator: 100, denominator: HUNDRED}"
    lines = [
        f"- name: {name}",
        "  typed_config:",
        f'    "@type": {_LOCAL_RATELIMIT}',
        f"    stat_prefix: {name}",
        "    token_bucket:",
        f"      max_tokens: {max_tokens}",
        f"      tokens_per_fill: {tokens_per_fill}",
        f"      fill_interval: {fill}",
        "    filter_enabled:",
        f"      runtime_key: {name}_enabled",
        f"      default_value: {percent}",
        "    filter_enforced:",
        f"      runtime_key: {name}_enforced",
        f"      default_value: {percent}",
    ]
    if partial:
        lines = [
            f"# {name}: for some requests only, so not listener-wide: a matching route's "
            f"token_bucket {{max_tokens: {max_tokens}, tokens_per_fill: {tokens_per_fill}, "
            f"fill_interval: {fill}}}"
        ]
    return ProxyLines("envoy", name, None, tuple(lines)), tuple(warnings)


def render_config(report: RateLimitReport) -> str:
    """The whole block to paste, one section per connector, figures per replica."""
    topology = report.topology
    m = topology.proxy_replicas
    out: list[str] = []
    if topology.proxy == "nginx":
        out.append(
            f"# nginx, {m} replica(s): figures are per replica. Put each 'http {{}}' part in the "
            "http block and each 'location' part in the location that proxies the vendor "
            "(the worker's base URL for the connector points there)."
        )
    else:
        out.append(
            f"# envoy, {m} replica(s): figures are per replica. Add the filters to http_filters "
            "of the HTTP connection manager that proxies the vendor, before "
            "envoy.filters.http.router."
        )
    for connector in report.connectors:
        lines = [p.proxy for p in connector.policies if p.proxy is not None]
        out.append("")
        out.append(f"# ==== {connector.connector}: {connector.base_url} ====")
        declare = [line for p in lines for line in p.declare]
        apply = [line for p in lines for line in p.apply]
        if not declare and not apply:
            out.append("# nothing here a proxy can enforce; the shared limiter keeps these limits")
            continue
        if topology.proxy == "envoy":
            out.append("# http_filters:")
            out += declare
            continue
        out.append("# -- in http {}:")
        out += declare
        if apply:
            out.append(f"# -- in the location that proxies {connector.base_url}:")
            if any(line.startswith("limit_req ") for line in apply):
                out.append("limit_req_status 429;")
            if any(line.startswith("limit_conn ") for line in apply):
                out.append("limit_conn_status 429;")
            out += apply
    return "\n".join(out) + "\n"
