"""Checks of single values: URLs, header names and the templates inside strings."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from opsctl.connectors._collect import Collector, did_you_mean, show
from opsctl.connectors._jsontext import join_pointer
from opsctl.connectors.templates import CREDENTIAL_FIELDS, NAMESPACES, scan_template

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_LOOPBACK_NAMES = {"localhost"}
_PLACEHOLDER = "templated"


@dataclass
class Options:
    """How strict one run is: loopback http (never in production), today's date (for
    ``source.as_of``), the file's name (for the id)."""

    allow_loopback_http: bool = True
    today: date | None = None
    file_stem: str | None = None


@dataclass
class Names:
    """The variables each template namespace offers where a template appears (``None``: that
    part of the document is malformed and reported elsewhere, so its names go unchecked)."""

    config: set[str] | None = None
    credentials: set[str] | None = None
    input: set[str] | None = None
    config_required: set[str] = field(default_factory=set)
    input_required: set[str] = field(default_factory=set)
    auth_type: str | None = None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(
    c: Collector,
    pointer: str,
    value: Any,
    options: Options,
    names: Names | None,
    *,
    api: bool,
) -> None:
    """An https URL (http for loopback hosts when allowed); templates only of ``config``."""
    if not isinstance(value, str) or not value:
        return
    if names is not None:
        check_templates(c, pointer, value, names, {"config"}, required_names=True)
    refs, _ = scan_template(value)
    plain = value
    for ref in reversed(refs):
        plain = plain[: ref.start] + _PLACEHOLDER + plain[ref.end :]
    try:
        parts = urlsplit(plain)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        c.add("invalid-url", pointer, f"{show(value)} is not a valid URL: {show(str(exc))}")
        return
    if value.startswith("{{") or parts.scheme not in ("http", "https") or not parts.hostname:
        c.add(
            "invalid-url",
            pointer,
            f"{show(value)} must be an absolute URL starting with https:// and a host",
        )
        return
    if parts.username or parts.password:
        c.add("invalid-url", pointer, "a URL must not carry a user name or password")
        return
    if parts.scheme == "https":
        return
    if _is_loopback(parts.hostname):
        if not options.allow_loopback_http:
            c.add(
                "insecure-url",
                pointer,
                f"{show(value)} is plain http; a loopback host is allowed only outside production",
                hint="use https://",
            )
        return
    if api:
        c.add(
            "insecure-url",
            pointer,
            f"{show(value)} is plain http; vendor URLs must be https "
            "(http only for 127.0.0.1, localhost or ::1)",
            hint="use https://",
        )
    else:
        c.add("insecure-docs-url", pointer, f"{show(value)} is plain http", hint="use https://")


def check_templates(
    c: Collector,
    pointer: str,
    text: str,
    names: Names,
    allowed: set[str],
    *,
    required_names: bool = False,
) -> None:
    refs, problems = scan_template(text)
    for problem in problems:
        c.add("template-syntax", pointer, problem.message, offset_in_string=problem.offset)
    for ref in refs:
        at = ref.start
        template = f"{{{{{ref.variable}}}}}"
        if ref.namespace not in NAMESPACES:
            c.add(
                "unknown-template-namespace",
                pointer,
                f"{show(template)} names {show(ref.namespace)}; templates name "
                "config, input or credentials",
                hint=did_you_mean(ref.namespace, NAMESPACES),
                offset_in_string=at,
            )
            continue
        if ref.namespace not in allowed:
            reason = (
                "credentials must not appear in URLs or paths, where they would be logged"
                if ref.namespace == "credentials"
                else f"only {' and '.join(sorted(allowed))} may be used here"
            )
            c.add(
                "template-not-allowed", pointer, f"{show(template)}: {reason}", offset_in_string=at
            )
            continue
        known = getattr(names, ref.namespace)
        if known is None:  # that part is malformed and reported elsewhere
            continue
        if ref.name not in known:
            c.add(
                "unknown-template-variable",
                pointer,
                f"{show(template)}: {_unknown_because(ref.namespace, ref.name, names)}",
                hint=did_you_mean(ref.name, known),
                offset_in_string=at,
            )
            continue
        if required_names and ref.namespace in ("config", "input"):
            required = names.config_required if ref.namespace == "config" else names.input_required
            if ref.name not in required:
                owner = "config_schema" if ref.namespace == "config" else "the input schema"
                c.add(
                    "optional-path-variable",
                    pointer,
                    f"{show(template)} is in a URL or path but {owner} does not require "
                    f"{show(ref.name)}",
                    offset_in_string=at,
                )


def _unknown_because(namespace: str, name: str, names: Names) -> str:
    if namespace == "config":
        return f"config_schema declares no property {show(name)}"
    if namespace == "input":
        return f"the operation's input declares no property {show(name)}"
    fields = CREDENTIAL_FIELDS.get(names.auth_type or "", ())
    provided = ", ".join(f"credentials.{n}" for n in fields)
    return f"auth type {names.auth_type} provides {provided or 'no credentials'}"


def check_headers(
    c: Collector, pointer: str, headers: Any, names: Names, allowed: set[str]
) -> None:
    for key, value in as_dict(headers).items():
        member = join_pointer(pointer, key)
        if not _HEADER_NAME.match(key):
            c.add(
                "invalid-header-name",
                member,
                f"{show(key)} is not a valid header name",
                at_key=True,
            )
        if isinstance(value, str):
            check_templates(c, member, value, names, allowed)


def check_header_name(c: Collector, pointer: str, value: Any) -> None:
    if isinstance(value, str) and value and not _HEADER_NAME.match(value):
        c.add("invalid-header-name", pointer, f"{show(value)} is not a valid header name")


def check_json_templates(
    c: Collector, pointer: str, value: Any, names: Names, allowed: set[str]
) -> None:
    stack: list[tuple[str, Any]] = [(pointer, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            check_templates(c, where, item, names, allowed)
        elif isinstance(item, dict):
            stack.extend((join_pointer(where, k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((join_pointer(where, i), v) for i, v in enumerate(item))
