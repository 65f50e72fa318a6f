"""A TCP connection for the short-lived clients of the deploy gate (Redis and HTTP)."""

from __future__ import annotations

import socket


def tcp_connect(host: str, port: int, timeout_s: float) -> socket.socket:
    """Connect with Nagle off. An ASCII host name goes to the resolver as bytes: as text it
    would pass through the ``idna`` codec, whose import costs the gate milliseconds at start."""
    address: str | bytes = host
    if host.isascii():
        address = host.encode("ascii")
    sock = socket.create_connection((address, port), timeout_s)  # type: ignore[arg-type]
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
