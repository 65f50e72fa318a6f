"""Redaction: no secret value the process has loaded, nor a known credential shape, is logged.

Every provider and :func:`opsctl.secrets.resolve` call :func:`register` with the values they
return; :class:`RedactionFilter` (installed on the handler by ``configure_logging``) rewrites each
record's message, arguments, extras, context and exception text through :func:`redact`.
API answers show :func:`fingerprint` instead of a value.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4
"""Shorter values are not registered: blanking every ``true`` or ``1234`` helps no one."""

_KEYS = r"[\w.-]*?(?:secret|password|passwd|pwd|token|api[_-]?key|secret[_-]access[_-]key)"
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host → scheme://user:***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s/]*@"), rf"\1:{MASK}@"),
    # Authorization headers: Bearer, Basic, Token, Digest credentials
    (
        re.compile(
            r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|digest)?\s*)"
            r"[^\s\"',;]+"
        ),
        rf"\1{MASK}",
    ),
    # "Bearer <token>": a token has 8+ characters and something besides letters, so prose
    # such as "the vendor refused the bearer credential" is left readable.
    (
        re.compile(
            r"(?i)\b(bearer\s+)(?=[A-Za-z0-9\-._~+/]{8})(?=[A-Za-z]*[0-9\-._~+/])"
            r"[A-Za-z0-9\-._~+/]+=*"
        ),
        rf"\1{MASK}",
    ),
    # JSON Web Tokens: three base64url parts, the first two JSON objects ("eyJ")
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    # AWS access key ids
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    # "password": "…", 'client_secret': '…', api_key: "…" (JSON, Python reprs, YAML)
    (
        re.compile(rf"(?i)((?<![\w-])([\"']?){_KEYS}\2\s*:\s*)([\"'])(?:\\.|(?!\3).)*\3"),
        rf"\1\3{MASK}\3",
    ),
    # password=… in query strings, form bodies, DSNs and key=value logs (quoted or bare)
    (
        re.compile(rf"(?i)((?<![\w-]){_KEYS}\s*=\s*)(?:\"[^\"]*\"|'[^']*'|[^\s&;,\"'}}<>)]+)"),
        rf"\1{MASK}",
    ),
)


class _Registry:
    """The secret values seen by this process, compiled into one pattern on change."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if value in self._values:  # the common case: a value read again
            return
        forms = {value, quote(value, safe=""), quote_plus(value)}
        forms = {f for f in forms if len(f) >= MIN_LENGTH}
        if forms <= self._values:
            return
        with self._lock:
            self._values |= forms
            # Longest first, so a secret containing another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None

    def __len__(self) -> int:
        return len(self._values)

    def sub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text


_registry = _Registry()


def register(value: str | None) -> None:
    """Remember ``value`` as a secret: from now on :func:`redact` masks it (and its URL forms).

    Values shorter than :data:`MIN_LENGTH` characters are ignored.
    """
    if value and len(value) >= MIN_LENGTH:
        _registry.add(value)


def forget_all() -> None:
    """Forget every registered value (for tests and benchmarks)."""
    _registry.clear()


def redact(text: str) -> str:
    """``text`` with every registered secret and every known credential shape replaced."""
    if not text:
        return text
    text = _registry.sub(text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, _depth: int = 0) -> Any:
    """Redact the strings inside ``value`` (dicts, lists, tuples); other objects by their text."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if _depth > 8:
        return redact(str(value))
    if isinstance(value, Mapping):
        return {k: redact_value(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, _depth + 1) for v in value]
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


def fingerprint(value: str | bytes) -> str:
    """The first 8 hex digits of the value's SHA-256: shown in place of a secret value.

    Compare by hand with ``printf %s "$VALUE" | sha256sum | cut -c1-8``.
    """
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:8]


_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class RedactionFilter(logging.Filter):
    """A handler filter that redacts a record in place; it never drops a record.

    ``context`` is the context variable whose fields the formatters add to each line
    (``opsctl.logs.log_context``): its values are copied onto the record, redacted, so the
    formatter prints the redacted copies.
    """

    def __init__(self, context: ContextVar[dict[str, Any] | None] | None = None) -> None:
        super().__init__()
        self._context = context

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is, redacted
            message = " ".join(str(part) for part in (record.msg, record.args))
        record.msg = redact(message)
        record.args = ()
        for key, value in list(record.__dict__.items()):
            if key not in _RESERVED:
                record.__dict__[key] = redact_value(value)
        if self._context is not None:
            for key, value in (self._context.get() or {}).items():
                if key not in record.__dict__:
                    record.__dict__[key] = redact_value(value)
        if record.exc_info and record.exc_info[1] is not None:
            # The formatters print exc_text when set (like logging.Formatter's own cache).
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()
