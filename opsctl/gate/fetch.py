"""One GET of an opsctl health endpoint, on the standard library's ``http.client``.

The deploy gate, ``opsctl status`` and the dashboard judge the same answers; this module is
the gate's synchronous transport. One request, ``Connection: close``, redirects not followed
(the gate judges what it gets), a body capped at :data:`MAX_BODY`, and a deadline on the whole
exchange: ``http.client``'s timeout bounds each socket operation, so a server that trickles
its answer a byte at a time is cut off by a timer that shuts the socket down.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import quote, urlsplit

HTTP_TIMEOUT_S = 5.0
MAX_BODY = 1 << 20
_SAFE = "/?&=%:@!$'()*+,;~-._"  # what a request target keeps as it is (RFC 3986)
_USER_AGENT = "opsctl-deploy-gate"
_ACCEPT = "application/health+json, application/json;q=0.9"


@dataclass(frozen=True)
class HttpAnswer:
    """Status, content type and body (at most ``MAX_BODY`` bytes) of one response."""

    status: int
    content_type: str
    body: bytes


def is_loopback(host: str | None) -> bool:
    """``localhost`` or an address of 127.0.0.0/8 or ``::1``: a host a token never leaves."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_leaves_machine(url: str) -> bool:
    """True when a bearer token sent to ``url`` would cross the network in clear text."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback(parts.hostname)


class _Deadline:
    """Shuts the watched socket down when the whole exchange runs past ``timeout_s``; the
    exchange then ends in ``TimeoutError`` whatever the half-read answer looked like."""

    def __init__(self, timeout_s: float):
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing left to stop
                self._sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        if self.expired and not isinstance(exc, TimeoutError):
            raise TimeoutError("timed out") from exc


def http_get(
    url: str,
    headers: dict[str, str],
    timeout_s: float = HTTP_TIMEOUT_S,
    *,
    max_body: int = MAX_BODY,
    tls: ssl.SSLContext | None = None,
) -> HttpAnswer:
    """GET ``url``. Raises ``OSError`` (``socket.gaierror``, refused, ``ssl.SSLError``),
    ``TimeoutError`` past ``timeout_s`` for the whole exchange, ``http.client.HTTPException``
    for an answer that is not HTTP, or ``ValueError`` for a header HTTP cannot carry."""
    for name, value in headers.items():
        if not value.isprintable() or not all(ord(c) < 256 for c in value):
            # Named, never shown: the value may be a token.
            raise ValueError(f"the {name} header has a character HTTP cannot carry")
    parts = urlsplit(url)
    host = parts.hostname or ""
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), _SAFE)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout_s, context=tls or ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout_s)
    request_headers = {
        "User-Agent": _USER_AGENT,
        "Accept": _ACCEPT,
        "Accept-Encoding": "identity",
        "Connection": "close",
        **headers,
    }
    try:
        with _Deadline(timeout_s) as deadline:
            conn.connect()
            # Kept here: http.client lets go of the socket once an answer says "close".
            deadline.watch(conn.sock)
            conn.request("GET", target, headers=request_headers)
            response = conn.getresponse()
            body = response.read(max_body)
        return HttpAnswer(response.status, response.getheader("Content-Type") or "", body)
    finally:
        conn.close()


def describe_http_error(url: str, exc: BaseException, timeout_s: float = HTTP_TIMEOUT_S) -> str:
    """One sentence for a failed GET: DNS, refused, TLS, timeout, not HTTP."""
    host = urlsplit(url).hostname
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r} ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {host} not trusted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error talking to {host}: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return f"{url} did not answer within {timeout_s:g} s"
    if isinstance(exc, http.client.RemoteDisconnected):
        return f"{url} closed the connection without an answer"
    if isinstance(exc, http.client.HTTPException):
        return f"{url} did not answer with HTTP: {type(exc).__name__}: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused"
    if isinstance(exc, OSError):
        return f"cannot connect to {url}: {exc.strerror or exc}"
    if isinstance(exc, ValueError):
        return f"cannot send the request to {url}: {exc}"
    return f"request to {url} failed: {type(exc).__name__}: {exc}"
