"""Benchmark of issue 7's executor targets: executions through the whole path, and the
executor's own cost per request.

    .venv/bin/python bench/executions.py [--executions 5000] [--concurrency 64] [--workers 2]
        [--calls 3000] [--redis-url URL] [--json]

1. **Whole path.** A private ``redis-server``, a local vendor in its own process (an aiohttp
   server answering ``GET /fast`` at once, no rate limit), and a stack of ``opsctl daemon web``
   plus ``--workers`` ``opsctl daemon worker`` processes with a definition pointing at the vendor
   (``GENERIC_EXECUTOR_ENABLED=true``). A client keeps ``--concurrency`` ``POST
   /api/executions`` in flight until ``--executions`` are queued; each is run by a worker
   (``connector.execute`` → one GET to the vendor) and its result stored. executions/s =
   executions / (first POST → last stored result); end-to-end latency of one execution = its
   stored ``finished_at`` (Redis time) - the ``time.time()`` just before its POST. A warm-up
   round of 300 comes first. The CPU each process used in the measured window is reported per
   execution. Then 200 executions one at a time (the next POST once the last result is
   stored): the latency of one execution on an idle stack.
2. **Executor overhead.** In this process, against the same vendor, ``--calls`` sequential
   ``execute()`` calls of that operation beside as many bare ``session.get(url)`` + ``json()``
   calls on one aiohttp session, interleaved in rounds of 100; overhead = median(execute) -
   median(bare), the executor's added time per request (input check, rendering, result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _stack import free_port, redis_server, serving, stack

from opsctl.constants import WORKER_CONCURRENCY

TARGET_RATE = 500.0  # executions/s with 2 worker processes
TARGET_OVERHEAD_MS = 2.0


# --- the local vendor ----------------------------------------------------------------------


def serve_vendor(port: int) -> None:
    """``--serve-vendor PORT``: the vendor process."""
    from aiohttp import web

    async def fast(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "items": [{"id": 1}, {"id": 2}]})

    app = web.Application()
    app.router.add_get("/fast", fast)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@contextmanager
def vendor_process() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(
        [sys.executable, __file__, "--serve-vendor", str(port)], url + "/fast", "the local vendor"
    ):
        yield url


def write_definition(folder: Path, vendor_url: str) -> Path:
    doc = {
        "schema_version": "1",
        "id": "benchvendor",
        "version": "1.0.0",
        "display_name": "Local no-latency vendor",
        "docs_url": "https://example.invalid/docs",
        "release_stage": "experimental",
        "base_url": vendor_url,
        "auth": {"type": "none"},
        "operations": [
            {
                "id": "fast",
                "method": "GET",
                "path": "/fast",
                "records_path": "items",
                "input": {"type": "object", "properties": {"n": {"type": "integer"}}},
                "query": {"n": "{{input.n}}"},
            }
        ],
        "check": "fast",
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "benchvendor.json").write_text(json.dumps(doc))
    return folder


# --- 1. the whole path ---------------------------------------------------------------------


async def post_all(base: str, count: int, concurrency: int) -> list[tuple[str, float]]:
    """POST ``count`` executions with ``concurrency`` in flight: (id, wall time before POST)."""
    import aiohttp

    out: list[tuple[str, float]] = []
    left = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            for n in left:
                body = {"connector": "benchvendor", "operation": "fast", "input": {"n": n}}
                sent = time.time()
                async with session.post(f"{base}/api/executions", json=body) as resp:
                    answer = await resp.json()
                    if resp.status != 202:
                        raise SystemExit(f"bench: POST answered {resp.status}: {answer}")
                out.append((answer["id"], sent))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return out


async def collect(env: dict[str, str], posted: list[tuple[str, float]], within: float) -> Any:
    """Wait until every execution is stored; their job infos."""
    from opsctl.queue import connect_queue
    from opsctl.settings import load_settings

    settings = load_settings(env)
    queue = await connect_queue(settings)
    try:
        deadline = time.monotonic() + within
        while True:
            stats = await queue.stats()
            if stats.waiting + stats.active + stats.delayed == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: executions still pending after {within:g} s: {stats}")
            await asyncio.sleep(0.02)
        return [await queue.get(job_id) for job_id, _ in posted]
    finally:
        await queue.close()


def whole_path(args: argparse.Namespace, vendor_url: str, redis_url: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="opsctl-bench-exec-"))
    os.environ["DEFINITIONS_PATH"] = str(write_definition(tmp / "defs", vendor_url))
    os.environ["GENERIC_EXECUTOR_ENABLED"] = "true"
    types = ("web", *(["worker"] * args.workers))
    with stack(redis_url, types=types) as env:
        base = env["APP_URL"]
        warm = asyncio.run(post_all(base, 300, args.concurrency))
        asyncio.run(collect(env, warm, 60))
        processes = _processes()
        before = _cpu(processes)
        started = time.time()
        posted = asyncio.run(post_all(base, args.executions, args.concurrency))
        posted_s = time.time() - started
        infos = asyncio.run(collect(env, posted, 120))
        after = _cpu(processes)
        idle = asyncio.run(one_at_a_time(base, env, 200))
    failed = [
        i for i in infos if i is None or i.status != "done" or i.result["status"] != "succeeded"
    ]
    if failed:
        raise SystemExit(f"bench: {len(failed)} execution(s) did not succeed, e.g. {failed[0]}")
    finished = [i.finished_at for i in infos]
    first_post = min(sent for _, sent in posted)
    latencies = sorted(
        (i.finished_at - sent) * 1000 for i, (_, sent) in zip(infos, posted, strict=True)
    )
    span = max(finished) - first_post
    return {
        "executions": args.executions,
        "workers": args.workers,
        "worker_concurrency": WORKER_CONCURRENCY,
        "client_concurrency": args.concurrency,
        "executions_per_s": args.executions / span,
        "post_per_s": args.executions / posted_s,
        "latency_p50_ms": statistics.median(latencies),
        "latency_p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "latency_max_ms": latencies[-1],
        "cpu_ms_per_execution": {
            role: round((after[role] - before[role]) * 1000 / args.executions, 3)
            for role in sorted(before)
        },
        "idle_latency_p50_ms": statistics.median(idle),
        "idle_latency_p99_ms": idle[int(len(idle) * 0.99) - 1],
    }


def _processes() -> dict[str, list[Any]]:
    """This benchmark's child processes by role (web, worker, vendor, redis)."""
    import psutil

    roles: dict[str, list[Any]] = {"web": [], "worker": [], "vendor": [], "redis": []}
    for proc in psutil.Process().children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        for role, mark in (
            ("web", "daemons.web"),
            ("worker", "daemons.worker"),
            ("vendor", "--serve-vendor"),
            ("redis", "redis-server"),
        ):
            if mark in line:
                roles[role].append(proc)
    return roles


def _cpu(roles: dict[str, list[Any]]) -> dict[str, float]:
    out = {}
    for role, procs in roles.items():
        total = 0.0
        for proc in procs:
            times = proc.cpu_times()
            total += times.user + times.system
        out[role] = total
    return out


async def one_at_a_time(base: str, env: dict[str, str], count: int) -> list[float]:
    """End-to-end latency (ms) of ``count`` executions, each POSTed once the last is stored."""
    import aiohttp

    from opsctl.queue import connect_queue
    from opsctl.settings import load_settings

    queue = await connect_queue(load_settings(env))
    out = []
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(count):
                body = {"connector": "benchvendor", "operation": "fast", "input": {"n": n}}
                sent = time.time()
                async with session.post(f"{base}/api/executions", json=body) as resp:
                    job_id = (await resp.json())["id"]
                while True:
                    info = await queue.get(job_id)
                    if info is not None and info.finished_at is not None:
                        break
                    await asyncio.sleep(0.0005)
                out.append((info.finished_at - sent) * 1000)
                await asyncio.sleep(0.005)
    finally:
        await queue.close()
    return sorted(out)


# --- 2. the executor's overhead ------------------------------------------------------------


async def overhead(vendor_url: str, calls: int) -> dict[str, float]:
    import aiohttp

    from opsctl.connectors.executor import execute
    from opsctl.connectors.loader import load_definitions

    class NoCredentials:
        async def credentials(self, connection_id: str | None, definition: Any) -> dict[str, str]:
            return {}

        async def refreshed(self, connection_id: str | None, definition: Any, rejected: Any) -> Any:
            return {}

    folder = write_definition(Path(tempfile.mkdtemp(prefix="opsctl-bench-def-")), vendor_url)
    definition = load_definitions([folder]).definitions["benchvendor"]
    url = f"{vendor_url}/fast"
    bare: list[float] = []
    executor: list[float] = []
    credentials = NoCredentials()
    async with aiohttp.ClientSession() as session:

        async def one_bare(n: int) -> None:
            started = time.perf_counter()
            async with session.get(url, params={"n": str(n)}) as resp:
                await resp.json()
            bare.append(time.perf_counter() - started)

        async def one_execute(n: int) -> None:
            started = time.perf_counter()
            result = await execute(
                definition,
                "fast",
                {"n": n},
                credentials=credentials,
                connection_id=None,
                config={},
                session=session,
                allow_loopback_http=True,
            )
            executor.append(time.perf_counter() - started)
            if result.status != "succeeded":
                raise SystemExit(f"bench: execute failed: {result.error}")

        for n in range(200):  # warm both paths and the connection pool
            await one_bare(n)
            await one_execute(n)
        bare.clear()
        executor.clear()
        for round_start in range(0, calls, 100):
            for n in range(round_start, round_start + 100):
                await one_bare(n)
            for n in range(round_start, round_start + 100):
                await one_execute(n)
    bare_ms = statistics.median(bare) * 1000
    exec_ms = statistics.median(executor) * 1000
    return {
        "calls": calls,
        "bare_p50_ms": bare_ms,
        "execute_p50_ms": exec_ms,
        "overhead_p50_ms": exec_ms - bare_ms,
    }


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-vendor":
        serve_vendor(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64, help="POSTs in flight")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--redis-url", help="default: a private redis-server on a free port")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with vendor_process() as vendor_url:
        over = asyncio.run(overhead(vendor_url, args.calls))
        if args.redis_url:
            path = whole_path(args, vendor_url, args.redis_url)
        else:
            with redis_server() as redis_url:
                path = whole_path(args, vendor_url, redis_url)
    result: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        "whole_path": path,
        "executor": over,
        "targets": {
            "executions_per_s": {
                "target": f">= {TARGET_RATE:g} with 2 workers",
                "measured": round(path["executions_per_s"], 1),
                "met": path["executions_per_s"] >= TARGET_RATE and args.workers <= 2,
            },
            "executor_overhead_ms": {
                "target": f"< {TARGET_OVERHEAD_MS:g} ms per request",
                "measured": round(over["overhead_p50_ms"], 3),
                "met": over["overhead_p50_ms"] < TARGET_OVERHEAD_MS,
            },
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    p, o = path, over
    print(f"machine: {result['machine']}")
    print(
        f"whole path: {p['executions']} executions, {p['workers']} workers x "
        f"{p['worker_concurrency']}, {p['client_concurrency']} POSTs in flight"
    )
    print(f"  executions/s: {p['executions_per_s']:.0f}  (POSTs accepted/s: {p['post_per_s']:.0f})")
    print(
        f"  end-to-end latency: p50 {p['latency_p50_ms']:.1f} ms, "
        f"p99 {p['latency_p99_ms']:.1f} ms, max {p['latency_max_ms']:.1f} ms"
    )
    print(
        f"  one at a time: p50 {p['idle_latency_p50_ms']:.1f} ms, "
        f"p99 {p['idle_latency_p99_ms']:.1f} ms"
    )
    cpu = ", ".join(f"{role} {ms:.2f}" for role, ms in p["cpu_ms_per_execution"].items())
    print(f"  CPU ms per execution: {cpu}")
    print(
        f"executor: bare aiohttp GET p50 {o['bare_p50_ms']:.3f} ms, execute() p50 "
        f"{o['execute_p50_ms']:.3f} ms, overhead {o['overhead_p50_ms']:.3f} ms per request"
    )
    for name, t in result["targets"].items():
        print(
            f"  target {name}: {t['target']}: {t['measured']} — {'met' if t['met'] else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
