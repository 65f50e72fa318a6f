"""Benchmark of issue 9's targets: the dashboard's UI-loop cost per refresh, and its memory.

    .venv/bin/python bench/dashboard.py [--rounds 40] [--live-seconds 20]
        [--redis-url redis://127.0.0.1:6379/0] [--json]

1. UI-loop time of one refresh of every pane, with frozen data of a large platform (50
   supervised processes and 20 remote heartbeats, 200 dead letters, 10 connectors, 10 x 5
   rate-limit policies, 100 new log lines), headless at 80x24 and at 200x50. Every round changes
   the figures (uptimes, CPU, ages, counters), so the tables really update. Measured as CPU time
   of the UI thread (``time.thread_time``, which leaves out waiting): *handlers* is the message
   handlers alone, called directly; *refresh* is posting the seven messages and letting the app
   settle (dispatch, handlers, layout and the repaint of the visible pane).
2. The dashboard against a real platform: ``opsctl up`` (6 processes) on Redis, 200 dead
   letters and a trickle of jobs; the dashboard runs headless in a child process with real
   sources, refreshing every 0.5 s and walking through the seven panes. Reported: its peak RSS
   (VmHWM), the refresh rounds it made, and the lag of a 10 ms timer on its UI loop (a blocking
   call would show there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _stack import OPSCTL, base_env, free_port  # noqa: E402
from textual.message import Message  # noqa: E402

from opsctl.tui.app import DashboardApp  # noqa: E402
from opsctl.tui.messages import (  # noqa: E402
    EventsReceived,
    ProcessesUpdated,
    QueueUpdated,
)
from opsctl.tui.widgets.queue_summary import QueueSummary  # noqa: E402
from tests.tui import _frozen as F  # noqa: E402

SIZES = {
    "processes_n": 50,
    "remote": 20,
    "dead": 200,
    "connectors_n": 10,
    "rl_connectors": 10,
    "policies": 5,
    "log_lines": 100,
}


def round_messages(tick: int) -> list[Message]:
    """One refresh of every pane at a large size; figures differ from one tick to the next."""
    messages = F.messages(**SIZES)
    out: list[Message] = []
    for message in messages:
        if isinstance(message, ProcessesUpdated):
            data = message.data
            procs = tuple(
                dataclasses.replace(
                    p,
                    uptime_s=(p.uptime_s or 0) + tick,
                    cpu_percent=((p.cpu_percent or 0) + tick * 0.7) % 100,
                )
                for p in data.processes
            )
            message = ProcessesUpdated(dataclasses.replace(data, processes=procs))
        elif isinstance(message, QueueUpdated):
            message = QueueUpdated(
                dataclasses.replace(message.data, limiter=F.limiter(SIZES["rl_connectors"], tick))
            )
        elif isinstance(message, EventsReceived):
            message = EventsReceived(
                tuple(dataclasses.replace(e, at=e.at + tick) for e in message.events)
            )
        out.append(message)
    return out


def _handler(screen: Any, message: Message) -> Any:
    name = "".join("_" + c.lower() if c.isupper() else c for c in type(message).__name__)
    return getattr(screen, "on" + name)


async def ui_cost(rounds: int, size: tuple[int, int]) -> dict[str, Any]:
    """Per visible pane: median and worst UI-thread CPU ms of handlers, and of a refresh."""
    tick = 0
    app = DashboardApp(None, hostname=F.HOST, clock=lambda: F.NOW + tick)
    results: dict[str, Any] = {}
    async with app.run_test(size=size) as pilot:
        screen = app.dashboard
        screen.query_one(QueueSummary).set_history(F.THROUGHPUT * 5)
        for key, pane in (("1", "processes"), ("2", "queue"), ("5", "limits"), ("7", "logs")):
            await pilot.press(key)
            handlers: list[float] = []
            refresh: list[float] = []
            for _ in range(rounds):
                tick += 1
                messages = round_messages(tick)
                started = time.thread_time()
                for message in messages:
                    _handler(screen, message)(message)
                handlers.append((time.thread_time() - started) * 1000)
                await pilot.pause()
                tick += 1
                messages = round_messages(tick)
                started = time.thread_time()
                for message in messages:
                    screen.post_message(message)
                await pilot.pause()
                refresh.append((time.thread_time() - started) * 1000)
            results[pane] = {
                "handlers_ms_median": round(statistics.median(handlers), 1),
                "handlers_ms_max": round(max(handlers), 1),
                "refresh_ms_median": round(statistics.median(refresh), 1),
                "refresh_ms_p95": round(sorted(refresh)[int(0.95 * (len(refresh) - 1))], 1),
            }
    return results


# --- the live run ----------------------------------------------------------------------------


@contextlib.contextmanager
def platform(redis_url: str) -> Iterator[dict[str, str]]:
    """`opsctl up` on Redis under a fresh key prefix, in a short temporary directory."""
    home = Path(tempfile.mkdtemp(prefix="opsbench-", dir="/tmp"))
    port = free_port()
    env = base_env(
        {
            "OPSCTL_DATA_DIR": str(home / "data"),
            "PORT": str(port),
            "APP_URL": f"http://127.0.0.1:{port}",
            "QUEUE_REDIS_URL": redis_url,
            "OPSCTL_REDIS_PREFIX": f"bench-dash-{uuid.uuid4().hex[:8]}",
            "DEFINITIONS_PATH": str(ROOT / "definitions"),
            "OPSCTL_LOG_FORMAT": "json",
        }
    )
    log = (home / "up.log").open("wb")
    proc = subprocess.Popen(
        [OPSCTL, "up"],
        env=env,
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                url = f"{env['APP_URL']}/api/production/queue/heartbeat"
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: opsctl up did not become healthy: {home / 'up.log'}")
            time.sleep(0.2)
        yield env
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(home, ignore_errors=True)
        _forget(redis_url, env["OPSCTL_REDIS_PREFIX"])


def _forget(redis_url: str, prefix: str) -> None:
    """Delete the run's keys (its dead letters and heartbeats) from the shared Redis."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def _feed(env: dict[str, str], seconds: float) -> None:
    """200 jobs that dead-letter at once, then a few no-op jobs a second."""
    from opsctl.queue import NewJob, open_queue
    from opsctl.settings import load_settings

    async with open_queue(load_settings(env)) as queue:
        await queue.enqueue_many(
            [NewJob("bench-unknown-kind", {"n": i}, max_attempts=1) for i in range(200)]
        )
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await queue.enqueue_many([NewJob("noop") for _ in range(20)])
            await asyncio.sleep(0.5)


async def child(seconds: float) -> dict[str, Any]:
    """Run in the child: the dashboard on real sources; its peak RSS and UI-loop lag."""
    from opsctl.settings import load_settings
    from opsctl.tui.sources import Sources

    settings = load_settings()
    lags: list[float] = []
    async with Sources(settings, url=settings.app_url) as sources:
        app = DashboardApp(sources, refresh_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            loop = asyncio.get_running_loop()
            expected = loop.time() + 0.01

            def probe() -> None:
                nonlocal expected
                now = loop.time()
                lags.append(max(0.0, now - expected) * 1000)
                expected = now + 0.01

            app.set_interval(0.01, probe)
            end = time.monotonic() + seconds
            key = 0
            while time.monotonic() < end:
                await pilot.press(str(key % 7 + 1))
                key += 1
                await pilot.pause(1.0)
            rounds = app.dashboard.rounds
    lags.sort()
    return {
        "vmhwm_mb": round(peak_rss_kb() / 1024, 1),
        "refresh_rounds": rounds,
        "loop_lag_ms_p50": round(lags[len(lags) // 2], 1),
        "loop_lag_ms_p99": round(lags[int(0.99 * (len(lags) - 1))], 1),
        "loop_lag_ms_max": round(lags[-1], 1),
    }


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM), in KiB."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])


def live(redis_url: str, seconds: float) -> dict[str, Any]:
    with platform(redis_url) as env:
        feeder = subprocess.Popen(
            [sys.executable, __file__, "--feed", str(seconds + 5)], env=env, cwd=ROOT
        )
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(seconds)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
        finally:
            feeder.wait(seconds + 30)
    if done.returncode != 0:
        raise SystemExit(f"bench: the dashboard child failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--live-seconds", type=float, default=20)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--feed", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.child))))
        return
    if args.feed is not None:
        asyncio.run(_feed(dict(os.environ), args.feed))
        return

    result = {
        "sizes": SIZES,
        "ui_80x24": asyncio.run(ui_cost(args.rounds, (80, 24))),
        "ui_200x50": asyncio.run(ui_cost(args.rounds, (200, 50))),
        "live": live(args.redis_url, args.live_seconds) if args.live_seconds else {},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"frozen data: {SIZES}")
    for size in ("ui_80x24", "ui_200x50"):
        for pane, figures in result[size].items():
            print(
                f"{size[3:]:>7} {pane:<10} handlers median {figures['handlers_ms_median']:>5} ms"
                f" (max {figures['handlers_ms_max']}), refresh median"
                f" {figures['refresh_ms_median']:>5} ms (p95 {figures['refresh_ms_p95']})"
                "   target < 50 ms"
            )
    figures = result["live"]
    print(
        f"live: peak RSS {figures['vmhwm_mb']} MB (target < 120 MB), "
        f"{figures['refresh_rounds']} refresh rounds, UI-loop lag p50 "
        f"{figures['loop_lag_ms_p50']} ms, p99 {figures['loop_lag_ms_p99']} ms, "
        f"max {figures['loop_lag_ms_max']} ms"
    )


if __name__ == "__main__":
    main()
