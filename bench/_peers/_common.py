"""What the peer drivers share: settings from the environment, the marks a worker leaves in
Redis, the latency loop, and the command line.

The bench process reads the marks straight from Redis, so a peer needs no result backend:
``bench:first`` is when the worker began its first no-op job, ``bench:last`` when it ended its
``BENCH_N``-th, and ``bench:stamp:<key>`` when a latency job began (all ``time.time()``).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
N = int(os.environ.get("BENCH_N", "0"))
QUEUE = "bench"
FIRST_KEY = "bench:first"
LAST_KEY = "bench:last"
STAMP_PREFIX = "bench:stamp:"

_clients: list[redis.Redis] = []
_count = [0]


def client() -> redis.Redis:
    """One synchronous client a process, made on first use (after any fork)."""
    if not _clients:
        _clients.append(redis.Redis.from_url(REDIS_URL))
    return _clients[0]


def mark() -> None:
    """The no-op job's whole body: count the run; only the first and the N-th touch Redis."""
    if _count[0] == 0:
        client().set(FIRST_KEY, repr(time.time()))
    _count[0] += 1
    if _count[0] == N:
        client().set(LAST_KEY, repr(time.time()))


def stamp(key: str) -> None:
    """The latency job's body: note when it began."""
    began = time.time()
    client().set(STAMP_PREFIX + key, repr(began))


def latency(enqueue_stamp: Callable[[str], Any], jobs: int) -> list[float]:
    """Enqueue ``jobs`` single stamp jobs one at a time, each after the previous one began and a
    random 5-15 ms pause (so an idle worker's poll phase is not always the same); return each
    one's enqueue-call-to-start time in milliseconds."""
    r = client()
    samples = []
    for _ in range(jobs):
        key = uuid.uuid4().hex
        sent = time.time()
        enqueue_stamp(key)
        give_up = time.monotonic() + 10
        while (began := r.get(STAMP_PREFIX + key)) is None:
            if time.monotonic() > give_up:
                raise SystemExit("a latency job did not start within 10 s")
            time.sleep(0.001)
        samples.append((float(began) - sent) * 1000)
        time.sleep(random.uniform(0.005, 0.015))
    return samples


def main(
    *,
    bulk_enqueue: Callable[[int], None],
    enqueue_stamp: Callable[[str], Any],
    run_worker: Callable[[], None],
    describe: str,
) -> None:
    """``enqueue N`` | ``latency M`` | ``worker`` | ``describe``; results as one JSON line."""
    command, *rest = sys.argv[1:] or ["describe"]
    if command == "enqueue":
        n = int(rest[0])
        began = time.perf_counter()
        bulk_enqueue(n)
        print(json.dumps({"seconds": time.perf_counter() - began}))
    elif command == "latency":
        print(json.dumps({"latencies_ms": latency(enqueue_stamp, int(rest[0]))}))
    elif command == "worker":
        run_worker()
    elif command == "describe":
        print(json.dumps({"settings": describe}))
    else:
        raise SystemExit(f"unknown command {command!r}")
