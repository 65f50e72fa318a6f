"""One HTTP/1.1 GET over a socket of the standard library, for the deploy gate.

``http.client`` imports the ``email`` package and ``ssl`` before sending a byte, which takes
longer than the gate's whole budget on a plain-HTTP URL. This client sends one request with
``Connection: close`` and reads one response: a body framed by ``Content-Length``, by chunked
transfer coding or by the end of the connection, capped at ``max_body`` bytes. ``ssl`` is
imported only for an ``https`` URL. Redirects are not followed: the gate judges what it gets.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from opsctl._net import Socket, for_tls, gaierror, tcp_connect

HTTP_TIMEOUT_S = 5.0
MAX_BODY = 1 << 20
_MAX_HEAD = 64 * 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_SAFE = "/?&=%:@!$'()*+,;~-._"  # what a request target keeps as it is (RFC 3986)
_USER_AGENT = "opsctl-deploy-gate"


class HttpProtocolError(OSError):
    """What came back is not an HTTP/1.x response (or it broke off mid-way)."""


@dataclass(frozen=True)
class HttpAnswer:
    """Status, content type and body (at most ``max_body`` bytes) of one response."""

    status: int
    content_type: str
    body: bytes


def http_get(
    url: str,
    headers: dict[str, str],
    timeout_s: float = HTTP_TIMEOUT_S,
    *,
    max_body: int = MAX_BODY,
) -> HttpAnswer:
    """GET ``url``. Raises ``OSError`` (``socket.gaierror``, refused, ``ssl.SSLError``),
    ``TimeoutError`` when the whole exchange takes longer than ``timeout_s``, or
    :class:`HttpProtocolError`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    deadline = time.monotonic() + timeout_s
    # Spaces or other characters a request line cannot carry are percent-encoded.
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), _SAFE)
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority += f":{port}"
    lines = [f"GET {target} HTTP/1.1", f"Host: {authority}", f"User-Agent: {_USER_AGENT}"]
    lines += ["Accept: application/json", "Accept-Encoding: identity", "Connection: close"]
    lines += [f"{name}: {_header_value(name, value)}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sock = tcp_connect(host, port, timeout_s)
    try:
        if tls:
            import ssl

            sock = for_tls(sock)
            _remaining(sock, deadline)  # the handshake, too, within the whole exchange's time
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        _remaining(sock, deadline)
        sock.sendall(request)
        return _Reader(sock, deadline).response(max_body)
    finally:
        sock.close()


def _header_value(name: str, value: str) -> str:
    """The value, when HTTP can carry it; a ValueError naming the header (never the value,
    which may be a token) when a line break or a character past Latin-1 is in it."""
    if not value.isprintable() or not all(ord(c) < 256 for c in value):
        raise ValueError(f"the {name} header has a character HTTP cannot carry")
    return value


def _remaining(sock: Socket, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(left)


class _Reader:
    """Reads one response off the socket, never past ``deadline``."""

    def __init__(self, sock: Socket, deadline: float):
        self._sock = sock
        self._deadline = deadline
        self._buf = b""
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        _remaining(self._sock, self._deadline)
        data = self._sock.recv(65536)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _line(self, limit: int, part: str = "header") -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line, self._buf = self._buf[: end + 1], self._buf[end + 1 :]
                return line.rstrip(b"\r\n")
            if len(self._buf) > limit:
                too_long = "the response's header" if part == "header" else f"a line of the {part}"
                raise HttpProtocolError(f"{too_long} is too long")
            if not self._fill():
                raise HttpProtocolError(f"the connection closed before the response's {part} ended")

    def _exactly(self, size: int) -> bytes:
        while len(self._buf) < size:
            if not self._fill():
                raise HttpProtocolError("the connection closed inside the response's body")
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def _head(self) -> tuple[int, dict[str, str]]:
        status_line = self._line(_MAX_HEAD)
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit() or rest[3:4] not in (b"", b" "):
            shown = status_line[:40].decode("latin-1")
            raise HttpProtocolError(f"not an HTTP response (it began {shown!r})")
        fields: dict[str, str] = {}
        size = len(status_line)
        while line := self._line(_MAX_HEAD):
            size += len(line)
            if size > _MAX_HEAD:
                raise HttpProtocolError("the response's header is too long")
            name, colon, value = line.partition(b":")
            if not colon:
                raise HttpProtocolError(f"a malformed header line: {line[:40]!r}")
            fields[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
        return int(code), fields

    def response(self, max_body: int) -> HttpAnswer:
        status, fields = self._head()
        while status in (100, 102, 103):  # an interim answer (100 Continue): the real one follows
            status, fields = self._head()
        content_type = fields.get("content-type", "")
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunked(max_body)
        elif "content-length" in fields:
            length = fields["content-length"]
            if not (length.isascii() and length.isdigit()):
                raise HttpProtocolError(f"a malformed Content-Length: {length[:40]!r}")
            body = self._exactly(min(int(length), max_body))
        else:
            while len(self._buf) < max_body and self._fill():
                pass
            body = self._buf[:max_body]
        return HttpAnswer(status, content_type, body)

    def _chunked(self, max_body: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while total < max_body:
            size_text = self._line(1024, "chunked body").split(b";", 1)[0].strip()
            if not size_text or size_text.strip(_HEX_DIGITS):  # int() would take -5, +5, 0x5
                raise HttpProtocolError(f"a malformed chunk size: {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            take = min(size, max_body - total)
            parts.append(self._exactly(take))
            total += take
            if take < size:
                break
            self._exactly(2)  # the chunk's CRLF
        return b"".join(parts)


def describe_http_error(url: str, exc: BaseException, timeout_s: float = HTTP_TIMEOUT_S) -> str:
    """One sentence for a failed GET: DNS, refused, TLS, timeout, not HTTP."""
    host = urlsplit(url).hostname
    ssl = sys.modules.get("ssl")  # only an https request imports it, and only it raises these
    if isinstance(exc, gaierror):
        return f"cannot resolve host {host!r} ({exc.strerror or exc})"
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {host} not trusted: {exc.verify_message or exc}"
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return f"TLS error talking to {host}: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return f"{url} did not answer within {timeout_s:g} s"
    if isinstance(exc, HttpProtocolError):
        return f"{url} did not answer with HTTP: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused"
    if isinstance(exc, OSError):
        return f"cannot connect to {url}: {exc.strerror or exc}"
    return f"request to {url} failed: {type(exc).__name__}: {exc}"
