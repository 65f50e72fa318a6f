"""Benchmark of issue 8's targets: the shared rate limiter keeping a fleet under a vendor's limits.

    .venv/bin/python bench/ratelimit.py [--workers 4] [--concurrency 10] [--jobs 960]
        [--calls 5000] [--redis-url URL] [--json]

1. **Fleet.** A private ``redis-server``; a local vendor in its own process that counts requests
   per aligned window, 50 per 1 s AND 600 per 10 s, and answers 429 (with ``Retry-After``) past
   either; a definition declaring both limits (``fixed_window``, scope ``app``: one budget for
   the fleet); ``--workers`` real ``opsctl daemon worker --concurrency C`` processes and a
   ``timers`` daemon. After a warm-up round of one job a slot, ``--jobs`` ``connector.execute``
   jobs (one GET each) are queued at once. Reported: windows over either limit (aligned, as the
   vendor counts, and the most requests in any sliding 1 s and 10 s span), 429s, and the rate
   the fleet achieved while work was queued (first to last request) against the safe fleet
   rate, min over the policies of r = 0.8·L·0.8/W = min(32, 38.4) = 32 requests/s. Round trips
   per request come from the limiter's own counters in Redis: every ask is one script call
   (admitted + refused), and a reservation is claimed without one.
2. **Acquire latency.** In this process, on the same Redis, ``--calls`` sequential
   ``SharedLimiter.acquire`` calls for a request matching both policies (with budgets too big to
   wait on, so each answer is "go"), then as many from 10 concurrent tasks; Redis's own
   ``INFO commandstats`` counts the script calls; a bare ``PING`` round trip is the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _stack import OPSCTL, base_env, free_port, processes, redis_server, serving

LIMITS = ((50, 1.0), (600, 10.0))  # the vendor's: 50 a second AND 600 per 10 seconds
SAFE_RATE = min(0.8 * limit * 0.8 / window for limit, window in LIMITS)  # 32/s
TARGET_USE = 0.90
TARGET_MEDIAN_MS = 1.0
CONNECTOR = "ratevendor"


# --- the vendor ----------------------------------------------------------------------------


def serve_vendor(port: int) -> None:
    """``--serve-vendor PORT``: counts requests per aligned window, 429 past either limit."""
    from aiohttp import web

    windows: dict[tuple[float, int], int] = {}
    answers: list[tuple[float, int]] = []

    async def work(request: web.Request) -> web.Response:
        now = time.time()
        over = []
        for limit, window in LIMITS:
            key = (window, math.floor(now / window))
            windows[key] = windows.get(key, 0) + 1
            if windows[key] > limit:
                over.append((key[1] + 1) * window - now)
        if over:
            answers.append((now, 429))
            return web.json_response(
                {"error": "rate limited"},
                status=429,
                headers={"Retry-After": str(math.ceil(max(over)))},
            )
        answers.append((now, 200))
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"answers": answers})

    app = web.Application()
    app.router.add_get("/work", work)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@contextmanager
def vendor_process() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(
        [sys.executable, __file__, "--serve-vendor", str(port)], url + "/stats", "the vendor"
    ):
        yield url


def vendor_answers(url: str) -> list[tuple[float, int]]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as resp:
        return [(float(t), int(s)) for t, s in json.load(resp)["answers"]]


def definition(vendor_url: str, limits: tuple[tuple[int, float], ...] = LIMITS) -> dict[str, Any]:
    source = {"url": "https://example.invalid/limits", "as_of": "2026-11-29"}
    return {
        "schema_version": "1",
        "id": CONNECTOR,
        "version": "1.0.0",
        "display_name": "Local rate-limited vendor",
        "docs_url": "https://example.invalid/docs",
        "release_stage": "experimental",
        "base_url": vendor_url,
        "auth": {"type": "none"},
        "rate_limits": {
            "policies": [
                {
                    "id": f"per_{int(window)}s",
                    "kind": "fixed_window",
                    "limit": limit,
                    "window": f"PT{int(window)}S",
                    "scope": ["app"],
                    "source": source,
                }
                for limit, window in limits
            ],
            "signals": {"throttle_statuses": [429]},
        },
        "operations": [{"id": "work", "method": "GET", "path": "/work"}],
        "check": "work",
    }


# --- 1. the fleet --------------------------------------------------------------------------


def most_in_span(times: list[float], span: float) -> int:
    return max((bisect.bisect_left(times, t + span) - i for i, t in enumerate(times)), default=0)


def windows_over(times: list[float]) -> dict[str, int]:
    out = {}
    for limit, window in LIMITS:
        counts: dict[int, int] = {}
        for t in times:
            k = math.floor(t / window)
            counts[k] = counts.get(k, 0) + 1
        out[f"{int(window)}s"] = sum(1 for c in counts.values() if c > limit)
    return out


async def _counters(settings: Any) -> dict[str, int]:
    from opsctl.connectors.limiter_state import RedisState

    state = await RedisState.open(settings)
    try:
        c = (await state.counters()).get(CONNECTOR)
    finally:
        await state.close()
    if c is None:
        return {"admitted": 0, "delayed": 0, "refused": 0, "throttled": 0}
    return {
        "admitted": c.admitted,
        "delayed": c.delayed,
        "refused": c.refused,
        "throttled": c.throttled,
    }


async def _wait_workers(settings: Any, count: int, within: float = 60) -> None:
    from opsctl.queue import connect_queue

    queue = await connect_queue(settings)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            beats = await queue.heartbeats(ttl_s=15)
            if sum(1 for b in beats if b.heartbeat.role == "worker" and b.live) >= count:
                return
            await asyncio.sleep(0.2)
    finally:
        await queue.close()
    raise SystemExit(f"bench: {count} workers did not report within {within:.0f} s")


async def _run_jobs(settings: Any, count: int, within: float) -> dict[str, float]:
    """Queue ``count`` jobs at once; wait for all; when the last one left the ready list."""
    from opsctl.queue import NewJob, connect_queue

    payload = {"connector": CONNECTOR, "operation": "work", "input": {}, "config": {}}
    queue = await connect_queue(settings)
    try:
        queued_at = time.time()
        await queue.enqueue_many(
            [NewJob("connector.execute", payload, max_attempts=5) for _ in range(count)]
        )
        drained_at = None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            stats = await queue.stats()
            if drained_at is None and stats.waiting == 0:
                drained_at = time.time()
            if stats.waiting == stats.active == stats.delayed == 0:
                return {"queued_at": queued_at, "drained_at": drained_at or time.time()}
            await asyncio.sleep(0.05)
    finally:
        await queue.close()
    raise SystemExit(f"bench: {count} jobs did not finish within {within:.0f} s")


def fleet(args: argparse.Namespace, redis_url: str, vendor_url: str) -> dict[str, Any]:
    from opsctl.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="opsctl-bench-ratelimit-"))
    defs = tmp / "definitions"
    defs.mkdir()
    (defs / f"{CONNECTOR}.json").write_text(json.dumps(definition(vendor_url)))
    env = base_env(
        {
            "QUEUE_REDIS_URL": redis_url,
            "OPSCTL_REDIS_PREFIX": f"bench-rl-{os.getpid()}-{int(time.time())}",
            "OPSCTL_DATA_DIR": str(tmp / "data"),
            "DEFINITIONS_PATH": str(defs),
            "GENERIC_EXECUTOR_ENABLED": "true",
            "OPSCTL_LOG_LEVEL": "WARNING",
        }
    )
    settings = load_settings(
        {
            "QUEUE_REDIS_URL": redis_url,
            "OPSCTL_REDIS_PREFIX": env["OPSCTL_REDIS_PREFIX"],
            "OPSCTL_DATA_DIR": env["OPSCTL_DATA_DIR"],
        },
        cwd=tmp,
    )
    subprocess.run([OPSCTL, "db", "migrate"], env=env, cwd=tmp, check=True, capture_output=True)
    commands = [
        [OPSCTL, "daemon", "worker", "--concurrency", str(args.concurrency)]
        for _ in range(args.workers)
    ] + [[OPSCTL, "daemon", "timers"]]
    with processes(commands, env, tmp):
        asyncio.run(_wait_workers(settings, args.workers))
        slots = args.workers * args.concurrency
        asyncio.run(_run_jobs(settings, slots, within=60))  # warm-up: every slot opens its executor
        time.sleep(11)  # a fresh 10 s window and full buckets, so the run starts as a cold fleet
        warm = len(vendor_answers(vendor_url))
        before = asyncio.run(_counters(settings))
        timing = asyncio.run(_run_jobs(settings, args.jobs, within=args.jobs / SAFE_RATE * 3 + 30))
        after = asyncio.run(_counters(settings))
    answers = vendor_answers(vendor_url)
    run = sorted(answers[warm:])
    times = [t for t, _ in run]
    requests = len(run)
    throttles = sum(1 for _, s in answers if s == 429)
    queued_span = [t for t in times if t <= timing["drained_at"]]
    span = times[-1] - times[0]
    rate = (requests - 1) / span if span > 0 else 0.0
    steady = [t for t in times if t >= times[0] + 1.0]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    delta = {k: after[k] - before[k] for k in after}
    asks = delta["admitted"] + delta["refused"]
    return {
        "workers": args.workers,
        "concurrency": args.concurrency,
        "jobs": args.jobs,
        "requests": requests,
        "answers_429": throttles,
        "windows_over_limit": windows_over(sorted(t for t, _ in answers)),
        "max_in_any_1s": most_in_span(sorted(t for t, _ in answers), 1.0),
        "max_in_any_10s": most_in_span(sorted(t for t, _ in answers), 10.0),
        "seconds": round(span, 2),
        "rate_per_s": round(rate, 2),
        "steady_rate_per_s": round(steady_rate, 2),
        "safe_rate_per_s": SAFE_RATE,
        "use_of_safe_rate": round(rate / SAFE_RATE, 3),
        "steady_use_of_safe_rate": round(steady_rate / SAFE_RATE, 3),
        "requests_while_queued": len(queued_span),
        "limiter": delta,
        "round_trips_per_request": round(asks / requests, 3) if requests else None,
        "first_request_after_queueing_s": round(times[0] - timing["queued_at"], 3),
    }


# --- 2. acquire latency --------------------------------------------------------------------


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50": round(statistics.median(values) * 1000, 3),
        "p90": round(values[int(len(values) * 0.9)] * 1000, 3),
        "p99": round(values[int(len(values) * 0.99)] * 1000, 3),
    }


async def latency(redis_url: str, calls: int) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from opsctl.connectors.executor import RequestScope
    from opsctl.connectors.limiter import SharedLimiter
    from opsctl.connectors.limiter_state import RedisState
    from opsctl.connectors.validator import validate_bytes
    from opsctl.settings import load_settings

    roomy = tuple((10**9, window) for _, window in LIMITS)
    report = validate_bytes(json.dumps(definition("http://127.0.0.1:9", roomy)))
    assert report.definition is not None, [f.message for f in report.errors]
    defn = report.definition
    op = defn.operation("work")
    settings = load_settings(
        {"QUEUE_REDIS_URL": redis_url, "OPSCTL_REDIS_PREFIX": f"bench-lat-{os.getpid()}"}
    )
    limiter = SharedLimiter(await RedisState.open(settings))
    admin = aioredis.Redis.from_url(redis_url)

    async def scripts() -> int:
        stats = await admin.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))

    def scope() -> RequestScope:
        return RequestScope(CONNECTOR, "work", "GET", "/work", None, None, {})

    try:
        for _ in range(200):  # warm the connection pool and the script cache
            await limiter.acquire(defn, op, scope())
        pings = []
        for _ in range(calls // 5):
            started = time.perf_counter()
            await admin.ping()
            pings.append(time.perf_counter() - started)
        trips, calls_before = limiter.state.round_trips, await scripts()
        sequential = []
        for _ in range(calls):
            started = time.perf_counter()
            assert await limiter.acquire(defn, op, scope()) is None
            sequential.append(time.perf_counter() - started)
        server_calls = await scripts() - calls_before - 1  # the INFO above is not a script
        client_trips = limiter.state.round_trips - trips
        concurrent: list[float] = []

        async def task(n: int) -> None:
            for _ in range(n):
                started = time.perf_counter()
                assert await limiter.acquire(defn, op, scope()) is None
                concurrent.append(time.perf_counter() - started)

        await asyncio.gather(*(task(calls // 10) for _ in range(10)))
    finally:
        await limiter.close()
        await admin.aclose()
    return {
        "calls": calls,
        "acquire_ms": _ms(sequential),
        "acquire_10_tasks_ms": _ms(concurrent),
        "ping_ms": _ms(pings),
        "script_calls_per_acquire": round(max(server_calls, 0) / calls, 3),
        "round_trips_per_acquire": round(client_trips / calls, 3),
    }


# --- the report ----------------------------------------------------------------------------


def machine() -> str:
    cpus = os.cpu_count()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpus} CPUs {model}, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"


def print_report(fleet_: dict[str, Any], lat: dict[str, Any]) -> None:
    ok_windows = sum(fleet_["windows_over_limit"].values()) == 0
    rows = [
        (
            "windows over the vendor's limits (aligned 1 s / 10 s)",
            f"{fleet_['windows_over_limit']['1s']} / {fleet_['windows_over_limit']['10s']}",
            "0",
            ok_windows,
        ),
        (
            "most requests in any sliding 1 s / 10 s",
            f"{fleet_['max_in_any_1s']} / {fleet_['max_in_any_10s']}",
            "≤ 50 / ≤ 600",
            fleet_["max_in_any_1s"] <= 50 and fleet_["max_in_any_10s"] <= 600,
        ),
        ("429 answers", str(fleet_["answers_429"]), "0", fleet_["answers_429"] == 0),
        (
            "rate while work was queued (first to last request)",
            f"{fleet_['rate_per_s']}/s = {fleet_['use_of_safe_rate']:.1%} of {SAFE_RATE:g}/s",
            f"≥ {TARGET_USE:.0%}",
            fleet_["use_of_safe_rate"] >= TARGET_USE,
        ),
        (
            "  the same after the first second (burst spent)",
            f"{fleet_['steady_rate_per_s']}/s = {fleet_['steady_use_of_safe_rate']:.1%}",
            f"≥ {TARGET_USE:.0%}",
            fleet_["steady_use_of_safe_rate"] >= TARGET_USE,
        ),
        (
            "Redis round trips per request (limiter's counters)",
            str(fleet_["round_trips_per_request"]),
            "≤ 1",
            (fleet_["round_trips_per_request"] or 0) <= 1,
        ),
        (
            "script calls per acquire (Redis INFO commandstats)",
            str(lat["script_calls_per_acquire"]),
            "≤ 1",
            lat["script_calls_per_acquire"] <= 1,
        ),
        (
            "acquire latency p50 / p90 / p99, sequential",
            "{p50} / {p90} / {p99} ms".format(**lat["acquire_ms"]),
            f"p50 < {TARGET_MEDIAN_MS:g} ms",
            lat["acquire_ms"]["p50"] < TARGET_MEDIAN_MS,
        ),
        (
            "acquire latency p50 / p90 / p99, 10 tasks",
            "{p50} / {p90} / {p99} ms".format(**lat["acquire_10_tasks_ms"]),
            "",
            None,
        ),
        ("PING round trip p50 (reference)", "{p50} ms".format(**lat["ping_ms"]), "", None),
    ]
    print(f"Run on {time.strftime('%Y-%m-%d')}: {machine()}")
    print(
        f"{fleet_['workers']} workers x concurrency {fleet_['concurrency']}, "
        f"{fleet_['jobs']} jobs, vendor limits 50/1 s AND 600/10 s\n"
    )
    print("| measure | figure | target | met |")
    print("|---|---|---|---|")
    for name, figure, target, met in rows:
        mark = "" if met is None else ("yes" if met else "**no**")
        print(f"| {name} | {figure} | {target} | {mark} |")
    print(f"\nlimiter counters in the run: {fleet_['limiter']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-vendor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=960, help="about 30 s at 32/s")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.serve_vendor:
        serve_vendor(args.serve_vendor)
        return

    def run(redis_url: str) -> None:
        with vendor_process() as vendor_url:
            fleet_ = fleet(args, redis_url, vendor_url)
        lat = asyncio.run(latency(redis_url, args.calls))
        if args.json:
            print(json.dumps({"fleet": fleet_, "latency": lat}, indent=2))
        else:
            print_report(fleet_, lat)

    if args.redis_url:
        run(args.redis_url)
    else:
        with redis_server() as url:
            run(url)


if __name__ == "__main__":
    main()
