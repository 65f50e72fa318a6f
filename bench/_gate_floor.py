"""The least a deploy gate could do, for bench/health.py to measure beside the real one.

One EVAL of the queue's stats.lua on Redis, and GETs of the heartbeat and readiness endpoints
in two threads, on the standard library alone: no settings, no judging, no output. Whatever
``opsctl deploy-gate`` takes beyond this is its own code. Reads QUEUE_REDIS_URL (a plain
``redis://host:port`` without a password) and APP_URL.
"""

import json
import os
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

STATS_LUA = Path(__file__).resolve().parents[1] / "opsctl" / "queue" / "lua" / "stats.lua"


def get(host: str, port: int, path: str, out: list[object], i: int) -> None:
    # bytes: a str host would import the idna codec, as opsctl/_net.py explains
    with socket.create_connection((host.encode(), port), 5) as sock:  # type: ignore[arg-type]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    out[i] = json.loads(data.split(b"\r\n\r\n", 1)[1])


def command(*args: object) -> bytes:
    parts = [str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def main() -> None:
    app = urlsplit(os.environ["APP_URL"])
    redis = urlsplit(os.environ["QUEUE_REDIS_URL"])
    out: list[object] = [None, None]
    paths = ["/api/production/queue/heartbeat", "/api/health/ready"]
    threads = [
        threading.Thread(target=get, args=(app.hostname or "localhost", app.port, p, out, i))
        for i, p in enumerate(paths)
    ]
    for thread in threads:
        thread.start()
    address = ((redis.hostname or "localhost").encode(), redis.port or 6379)
    with socket.create_connection(address, 5) as sock:  # type: ignore[arg-type]
        sock.sendall(command("EVAL", STATS_LUA.read_text(), 4, "r", "d", "a", "x", "j:", "c:"))
        reply = sock.recv(65536)
    for thread in threads:
        thread.join()
    if not reply.startswith(b"*") or None in out:
        sys.exit(1)


if __name__ == "__main__":
    main()
