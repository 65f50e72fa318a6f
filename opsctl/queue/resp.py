"""A small synchronous Redis client on the standard library, for commands that start and exit.

``opsctl deploy-gate`` runs on every deploy and must answer about as fast as ``opsctl
--version``: importing redis-py's asyncio client alone takes longer than the gate's whole
budget. This client speaks RESP2 over one socket (TCP, TLS or a Unix socket), sends a batch
of commands in one write and reads their replies in order: enough for ``EVAL`` of the queue's
own Lua scripts, ``HGETALL`` and ``PING``. The daemons keep redis-py.

Reply types: simple strings and bulk strings are ``bytes``, integers ``int``, arrays
``list``, nil ``None``; an error reply is a :class:`RespError` in its place.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from opsctl._net import Socket, buffered_reader, for_tls, gaierror, tcp_connect, unix_connect
from opsctl.settings import redact_url

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
_MAX_BULK = 512 * 1024 * 1024  # Redis's own limit on one string
_MAX_DEPTH = 16  # nested arrays deeper than any reply of ours: a broken or hostile peer


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``, ``-NOAUTH ...``, ``-WRONGPASS ...``)."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class ProtocolError(OSError):
    """The peer sent something that is not RESP: not Redis, or a broken connection."""


Reply = Any


class RedisAddress:
    """Where and how to connect, from a ``redis://``, ``rediss://`` or ``unix://`` URL, read
    the way redis-py reads it: user and password before ``@``, the database as the path (or
    ``?db=``), ``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_check_hostname``, ``ssl_certfile``
    and ``ssl_keyfile`` for TLS. Other parameters (redis-py's pool and timeout tuning) do not
    change what the gate reads and are ignored."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        query: dict[str, str] = {}
        for pair in parts.query.split("&"):
            name, _, value = pair.partition("=")
            if name:
                query[unquote(name)] = unquote(value)
        self.url = url
        self.where = redact_url(url)
        self.scheme = parts.scheme.lower()
        if self.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unknown scheme {self.scheme!r}")
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None  # "" is none
        if query.get("password"):
            self.password = query["password"]
        self.path = unquote(parts.path) if self.scheme == "unix" else None
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        db = query.get("db") or ("" if self.scheme == "unix" else parts.path.strip("/"))
        self.db = int(db) if db else 0
        self.tls = self.scheme == "rediss"
        self.cert_reqs = query.get("ssl_cert_reqs", "required").lower()
        self.ca_certs = query.get("ssl_ca_certs")
        self.check_hostname = query.get("ssl_check_hostname", "false").lower() in ("1", "true")
        self.certfile = query.get("ssl_certfile")  # a client certificate, for mutual TLS
        self.keyfile = query.get("ssl_keyfile")


def encode(args: Sequence[Any]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis: {arg!r}")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespConnection:
    """One connection to Redis. Not thread-safe; close it (or use ``with``) when done."""

    def __init__(self, sock: Socket, address: RedisAddress):
        self.address = address
        self._sock = sock
        self._file = buffered_reader(sock)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        timeout: float = SOCKET_TIMEOUT_S,
    ) -> RespConnection:
        """Connect (and authenticate and select the database). Raises ``OSError`` (refused,
        unresolvable, TLS), ``TimeoutError`` or :class:`RespError` (credentials rejected)."""
        address = RedisAddress(url)
        if address.path is not None:
            sock = unix_connect(address.path, connect_timeout)
        else:
            sock = tcp_connect(address.host, address.port, connect_timeout)
        try:
            if address.tls:
                sock = _wrap_tls(sock, address)
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        conn = cls(sock, address)
        hello: list[tuple[Any, ...]] = []
        if address.password is not None:
            user = (address.username,) if address.username else ()
            hello.append(("AUTH", *user, address.password))
        if address.db:
            hello.append(("SELECT", address.db))
        try:
            for reply in conn.pipeline(hello) if hello else ():
                if isinstance(reply, RespError):
                    raise reply
        except BaseException:
            conn.close()  # the reader made from the socket holds it open too
            raise
        return conn

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Reply]:
        """Send every command in one write; their replies in order (errors in place)."""
        self._sock.sendall(b"".join(encode(c) for c in commands))
        return [self._read(0) for _ in commands]

    def call(self, *args: Any) -> Reply:
        """One command; raises :class:`RespError` for an error reply."""
        (reply,) = self.pipeline([args])
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _read(self, depth: int) -> Reply:
        line = self._file.readline(65536)
        if not line.endswith(b"\r\n"):
            if not line:
                raise ProtocolError("Redis closed the connection")
            raise ProtocolError(f"not a RESP reply: {line[:40]!r}")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return _integer(rest)
        if kind == b"$":
            size = _integer(rest)
            if size < 0:
                return None
            if size > _MAX_BULK:
                raise ProtocolError(f"a bulk string of {size} bytes is past Redis's limit")
            data = self._file.read(size + 2)
            if len(data) != size + 2 or not data.endswith(b"\r\n"):
                raise ProtocolError("Redis closed the connection inside a reply")
            return data[:-2]
        if kind == b"*":
            count = _integer(rest)
            if count < 0:
                return None
            if depth >= _MAX_DEPTH:
                raise ProtocolError("a reply nested deeper than any Redis reply")
            return [self._read(depth + 1) for _ in range(count)]
        raise ProtocolError(f"not a RESP reply: {line[:40]!r}")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> RespConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _integer(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"not a RESP integer: {text[:40]!r}") from None


def _wrap_tls(sock: Socket, address: RedisAddress) -> Socket:
    import ssl

    context = ssl.create_default_context(cafile=address.ca_certs)
    context.check_hostname = address.check_hostname and address.cert_reqs == "required"
    context.verify_mode = {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
    }.get(address.cert_reqs, ssl.CERT_REQUIRED)
    if address.certfile:
        context.load_cert_chain(address.certfile, address.keyfile)
    return context.wrap_socket(for_tls(sock), server_hostname=address.host)


def describe_failure(where: str, exc: BaseException) -> str:
    """One sentence for a failed call to Redis at ``where`` (already redacted), in the words
    :func:`opsctl.connections.describe_redis_error` uses for redis-py's errors."""
    if isinstance(exc, RespError):
        if exc.code in ("NOAUTH", "WRONGPASS", "NOPERM") or "AUTH" in str(exc)[:40]:
            return f"Redis at {where} rejected the credentials: {exc}"
        return f"Redis at {where} answered with an error: {exc}"
    if isinstance(exc, TimeoutError):
        return f"Redis at {where} did not answer in time"
    ssl = sys.modules.get("ssl")  # loaded only when a rediss:// URL was used
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of Redis at {where} not trusted: {exc.verify_message or exc}"
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return f"TLS error talking to Redis at {where}: {exc.reason or exc}"
    if isinstance(exc, gaierror):
        return f"cannot reach Redis at {where}: cannot resolve the host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.errno:
        return f"cannot reach Redis at {where}: {os.strerror(exc.errno)}"
    reason = str(exc).strip().rstrip(".") or type(exc).__name__
    return f"cannot reach Redis at {where}: {reason}"
