"""The least a deploy gate could do, for bench/health.py to measure beside the real one.

One EVAL of the queue's stats.lua on Redis, and GETs of the heartbeat and readiness endpoints
in two threads, on the standard library alone: no settings, no judging, no output. It uses
the cheapest parts the gate uses (``_socket``, ``_thread``: see opsctl/_net.py) and parses
the URLs and the JSON, which any gate must. Whatever ``opsctl deploy-gate`` takes beyond this
is its own code. Reads QUEUE_REDIS_URL (a plain ``redis://host:port`` without a password) and
APP_URL.
"""

import _socket
import _thread
import json
import os
import sys
from urllib.parse import urlsplit

STATS_LUA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "opsctl",
    "queue",
    "lua",
    "stats.lua",
)


def connect(host: str, port: int) -> _socket.socket:
    # bytes: a str host would import the idna codec, as opsctl/_net.py explains
    family, kind, proto, _, address = _socket.getaddrinfo(
        host.encode(), port, 0, _socket.SOCK_STREAM
    )[0]
    sock = _socket.socket(family, kind, proto)
    sock.settimeout(5)
    sock.connect(address)
    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    return sock


def get(host: str, port: int, path: str, out: list[object], i: int, done: _thread.LockType) -> None:
    try:
        sock = connect(host, port)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        out[i] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    finally:
        done.release()


def command(*args: object) -> bytes:
    parts = [str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def main() -> None:
    app = urlsplit(os.environ["APP_URL"])
    redis = urlsplit(os.environ["QUEUE_REDIS_URL"])
    out: list[object] = [None, None]
    paths = ["/api/production/queue/heartbeat", "/api/health/ready"]
    locks = [_thread.allocate_lock() for _ in paths]
    for i, path in enumerate(paths):
        locks[i].acquire()
        _thread.start_new_thread(
            get, (app.hostname or "localhost", app.port, path, out, i, locks[i])
        )
    sock = connect(redis.hostname or "localhost", redis.port or 6379)
    with open(STATS_LUA) as script:
        sock.sendall(command("EVAL", script.read(), 4, "r", "d", "a", "x", "j:", "c:"))
    reply = sock.recv(65536)
    sock.close()
    for lock in locks:
        lock.acquire(timeout=10)
    if not reply.startswith(b"*") or None in out:
        sys.exit(1)
    sys.stdout.flush()
    os._exit(0)  # as the gate ends


if __name__ == "__main__":
    main()
