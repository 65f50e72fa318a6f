"""An operation's HTTP request built from its templates and credentials, and what a vendor's
response says: its body, its records, and how long it asks us to wait.

Rendering follows docs/connectors.md with :mod:`opsctl.connectors.templates`: values in the
base URL and path are percent-encoded; a query, header or body value that is exactly one
template keeps its type (a list becomes a repeated query parameter) and is dropped when the
variable is absent.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote

from multidict import CIMultiDict
from yarl import URL

from opsctl.connectors.model import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    Definition,
    OAuth2Auth,
    Operation,
    RateLimitSignals,
    ResetFormat,
)
from opsctl.connectors.templates import MISSING, TemplateError, render, render_value

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
Variables = Mapping[str, Mapping[str, Any]]


class RequestProblem(Exception):
    """The request cannot be built or must not be sent; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Request:
    """One HTTP request ready to send (the credentials included)."""

    method: str
    url: URL
    """Absolute, with its query."""
    path: str
    """The operation's rendered path, relative to the base URL (for rate-limit policies)."""
    headers: CIMultiDict[str] = field(hash=False)
    body: Any = None
    body_format: str = "json"

    def send_kwargs(self) -> dict[str, Any]:
        """The body arguments of ``ClientSession.request``."""
        if self.body is None or self.method in ("GET", "HEAD"):
            return {}
        if self.body_format == "form":
            return {"data": _form_items(self.body)}
        return {"json": self.body}


@dataclass(frozen=True)
class RequestTemplate:
    """An operation's request before paging and auth: everything rendered once."""

    method: str
    origin: URL
    """The rendered base URL: next-page URLs must stay on its scheme, host and port."""
    url: URL
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: Any
    body_format: str

    def build(
        self,
        *,
        auth_headers: tuple[tuple[str, str], ...] = (),
        auth_query: tuple[tuple[str, str], ...] = (),
        params: Mapping[str, Any] | None = None,
        location: str = "query",
        follow: URL | None = None,
    ) -> Request:
        """The request for one page: paging ``params`` set in the query or body, or the URL a
        vendor named to ``follow`` (its own query kept; only the auth query is added)."""
        headers = CIMultiDict(self.headers)
        for name, value in auth_headers:
            headers[name] = value
        body = self.body
        if follow is not None:
            present = set(follow.query)
            url = follow.extend_query([(k, v) for k, v in auth_query if k not in present])
            return Request(self.method, url, self.path, headers, body, self.body_format)
        query = list(self.query)
        if params and location == "body":
            body = {**(body if isinstance(body, dict) else {}), **params}
        elif params:
            names = set(params)
            query = [(k, v) for k, v in query if k not in names]
            for name, value in params.items():
                query.extend(_query_items(name, value))
        query.extend(auth_query)
        url = self.url.with_query(query) if query else self.url
        return Request(self.method, url, self.path, headers, body, self.body_format)


def prepare(
    definition: Definition,
    operation: Operation,
    variables: Variables,
    *,
    allow_loopback_http: bool,
) -> RequestTemplate:
    """Render the operation's URL, query, headers and body (the credentials are added per
    request by :func:`auth_parts`). Raises :class:`RequestProblem`."""
    try:
        base = render(definition.base_url, {"config": variables.get("config", {})}, encode=_seg)
        path = render(operation.path, variables, encode=_seg)
        query = [
            item
            for name, value in operation.query.items()
            for item in _query_items(name, render_value(value, variables))
        ]
        headers: CIMultiDict[str] = CIMultiDict()
        for source in (definition.headers, operation.headers):
            for name, value in source.items():
                rendered = render_value(value, variables)
                if rendered is not MISSING and rendered is not None:
                    headers[name] = _header_value(name, _text(rendered))
        body = None
        if operation.body is not None:
            body = render_value(operation.body, variables)
            body = None if body is MISSING else body
    except TemplateError as exc:
        raise RequestProblem("template", f"cannot render the request: {exc}") from None
    origin = _url(base)
    url = _url(base.rstrip("/") + path)
    check_url(url, allow_loopback_http=allow_loopback_http)
    return RequestTemplate(
        operation.method,
        origin,
        url,
        path,
        tuple(query),
        tuple(headers.items()),
        body,
        operation.body_format,
    )


def auth_parts(
    definition: Definition, credentials: Mapping[str, str]
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """(headers, query parameters) that carry the credentials for the definition's auth."""
    auth = definition.auth
    if isinstance(auth, ApiKeyAuth):
        key = _credential(credentials, "api_key", auth.type)
        if auth.location == "query":
            return (), ((auth.name, key),)
        return ((auth.name, _header_value(auth.name, auth.prefix + key)),), ()
    if isinstance(auth, BasicAuth):
        user = _credential(credentials, "username", auth.type)
        password = _credential(credentials, "password", auth.type)
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return (("Authorization", f"Basic {token}"),), ()
    if isinstance(auth, BearerAuth):
        token = _credential(credentials, "token", auth.type)
        return ((auth.header, _header_value(auth.header, auth.prefix + token)),), ()
    if isinstance(auth, OAuth2Auth):
        token = _credential(credentials, "access_token", auth.type)
        return ((auth.header, _header_value(auth.header, auth.prefix + token)),), ()
    return (), ()


def check_url(url: URL, *, allow_loopback_http: bool) -> None:
    """Only https leaves the machine; plain http only to a loopback host outside production."""
    if not url.is_absolute() or not url.host:
        raise RequestProblem("invalid_url", f"the request URL {_shown(url)} has no host")
    if url.scheme == "https":
        return
    if url.scheme == "http" and url.host in LOOPBACK_HOSTS:
        if allow_loopback_http:
            return
        raise RequestProblem(
            "insecure_url",
            f"plain http to {url.host} is refused in production; only https URLs are called",
        )
    raise RequestProblem(
        "insecure_url", f"the request URL {_shown(url)} is not https; only https URLs are called"
    )


def same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


# --- responses ---------------------------------------------------------------------------


def parse_body(data: bytes, content_type: str) -> Any:
    """The body as JSON when it is JSON (by type, or by its first character), else text;
    ``None`` when empty. Raises ``ValueError`` for a body labelled JSON that is not."""
    if not data.strip():
        return None
    labelled = "json" in content_type
    if labelled or data.lstrip()[:1] in (b"{", b"["):
        try:
            return json.loads(data)
        except ValueError:
            if labelled:
                raise
    return data.decode("utf-8", errors="replace")


def body_path(body: Any, path: str) -> Any:
    """The value at a dotted ``path`` in the body (``$``: the body itself); ``None`` if absent."""
    if path == "$":
        return body
    value = body
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def records_at(body: Any, path: str | None) -> list[Any]:
    """The records of one page: the list at ``path``; an object there is one record. Without
    a ``records_path`` the body is the record (an array: each item one)."""
    value = body if path is None else body_path(body, path)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def throttle_wait(
    signals: RateLimitSignals, headers: Mapping[str, str], now: float
) -> float | None:
    """Seconds the vendor asks us to wait: its ``Retry-After``, else its reset header (unless
    the remaining header says requests are left); ``None`` when it says nothing."""
    if signals.retry_after_header:
        value = headers.get(signals.retry_after_header)
        if value is not None:
            wait = parse_retry_after(value, now)
            if wait is not None:
                return wait
    if signals.reset_header and signals.reset_format:
        value = headers.get(signals.reset_header)
        if value is None:
            return None
        if signals.remaining_header:
            remaining = _number(headers.get(signals.remaining_header, ""))
            if remaining is not None and remaining > 0:
                return None
        return parse_reset(value, signals.reset_format, now)
    return None


def parse_retry_after(value: str, now: float) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), as seconds from
    ``now`` (never negative); ``None`` when it is neither."""
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    return _until(_http_date(value), now)


def parse_reset(value: str, fmt: ResetFormat, now: float) -> float | None:
    """A reset header in its declared format, as seconds from ``now`` (never negative)."""
    if fmt == "http_date":
        return _until(_http_date(value), now)
    if fmt == "iso8601":
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return _until(moment.timestamp(), now)
    number = _number(value)
    if number is None:
        return None
    if fmt == "delta_s":
        return max(0.0, number)
    if fmt == "epoch_ms":
        return _until(number / 1000.0, now)
    return _until(number, now)


# --- helpers -----------------------------------------------------------------------------


def _seg(text: str) -> str:
    """Percent-encode a value for a URL path segment or host label."""
    return quote(text, safe="")


def _url(text: str) -> URL:
    try:
        return URL(text, encoded=text.isascii())
    except ValueError as exc:
        raise RequestProblem("invalid_url", f"the request URL is not valid: {exc}") from None


def _shown(url: URL) -> str:
    """A URL safe to show: without its query, which may carry a key."""
    return str(url.with_query(None).with_fragment(None))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _query_items(name: str, value: Any) -> list[tuple[str, str]]:
    if value is MISSING or value is None:
        return []
    if isinstance(value, list | tuple):
        return [(name, _text(v)) for v in value if v is not None and v is not MISSING]
    return [(name, _text(value))]


def _form_items(body: Any) -> list[tuple[str, str]] | str:
    if not isinstance(body, dict):
        return _text(body)
    return [item for name, value in body.items() for item in _query_items(name, value)]


def _header_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise RequestProblem("invalid_header", f"the value of header {name!r} holds a line break")
    return value


def _credential(credentials: Mapping[str, str], name: str, auth: str) -> str:
    value = credentials.get(name)
    if not isinstance(value, str) or not value:
        raise RequestProblem(
            "missing_credentials", f"the credentials have no {name!r}, which {auth} auth needs"
        )
    return value


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _http_date(text: str) -> float | None:
    try:
        moment = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _until(moment: float | None, now: float) -> float | None:
    return None if moment is None else max(0.0, moment - now)


__all__ = [
    "LOOPBACK_HOSTS",
    "Request",
    "RequestProblem",
    "RequestTemplate",
    "auth_parts",
    "body_path",
    "check_url",
    "parse_body",
    "parse_reset",
    "parse_retry_after",
    "prepare",
    "records_at",
    "same_origin",
    "throttle_wait",
]
