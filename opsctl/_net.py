"""Connections for the short-lived clients of the deploy gate (Redis and HTTP).

They are made with ``_socket``, the C module whose ``socket`` class the standard ``socket``
module subclasses. Importing ``socket`` builds four ``IntEnum`` classes from its constants and
imports ``selectors``: about 2.5 ms, a tenth of ``opsctl --version``, for nothing the gate
uses. The objects and errors are the same (``socket.gaierror`` *is* ``_socket.gaierror``),
and a TLS connection, which imports ``ssl`` and with it ``socket`` anyway, gets a standard
socket to wrap (:func:`for_tls`).
"""

from __future__ import annotations

import _socket
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

Socket = _socket.socket
"""A connected socket: ``socket.socket`` and ``ssl.SSLSocket`` are subclasses of it."""
gaierror = _socket.gaierror
"""A failed name lookup (``socket.gaierror``)."""


def tcp_connect(host: str, port: int, timeout_s: float) -> Socket:
    """Connect as ``socket.create_connection`` does (every address of the host in turn, each
    within ``timeout_s``), with Nagle off. An ASCII host name goes to the resolver as bytes:
    as text it would pass through the ``idna`` codec, whose import costs milliseconds."""
    address: str | bytes = host.encode("ascii") if host.isascii() else host
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in _socket.getaddrinfo(
        address, port, 0, _socket.SOCK_STREAM
    ):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout_s)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        return sock
    raise error or OSError(f"no address found for {host!r}")


def unix_connect(path: str, timeout_s: float) -> Socket:
    """Connect to a Unix socket within ``timeout_s``."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def for_tls(sock: Socket) -> socket.socket:
    """The same connection as a ``socket.socket``, which ``ssl`` wraps (its timeout kept)."""
    import socket

    timeout = sock.gettimeout()
    standard = socket.socket(fileno=sock.detach())
    standard.settimeout(timeout)
    return standard


def hostname() -> str:
    """This machine's host name (``socket.gethostname``)."""
    return _socket.gethostname()


class _Stream(io.RawIOBase):
    def __init__(self, sock: Socket):
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._sock.recv_into(buffer)


def buffered_reader(sock: Socket) -> io.BufferedReader:
    """A buffered binary reader of ``sock``, as ``sock.makefile("rb")``; closing it leaves the
    socket open. Its reads raise ``TimeoutError`` past the socket's timeout."""
    return io.BufferedReader(_Stream(sock))
