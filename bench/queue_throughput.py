"""Benchmark of issue 3's queue targets: opsctl's two backends beside arq, RQ and Celery.

    .venv/bin/python bench/queue_throughput.py [--n 20000] [--runs 3] [--redis-url URL]
        [--only opsctl-redis,opsctl-sqlite,arq,rq,celery] [--json] [--write-readme]

The same workload for each, in one run, on one Redis (a private ``redis-server`` on a free port
unless ``--redis-url`` names another):

1. ``n`` no-op jobs enqueued in bulk with nothing consuming (each library's bulk call: opsctl's
   ``enqueue_many``, RQ's ``enqueue_many``, concurrent ``enqueue_job`` for arq, ``apply_async``
   on one producer for Celery) → enqueue jobs/s.
2. Then ONE worker process is started and drains them → process jobs/s = n / (first job's
   start → last job's finish), so interpreter start-up is excluded. opsctl: the ``started_at``
   and ``finished_at`` it stores for every job (the backend's clock); peers: the worker notes
   ``time.time()`` as its first no-op job begins and as its n-th ends.
3. With that worker idle, single jobs are enqueued one at a time (after the previous one began
   and a random 5-15 ms pause) → enqueue-to-start latency p50/p99. opsctl: ``started_at -
   created_at`` from ``queue.get(id)`` (both the backend's clock); the time from just before
   the enqueue call is reported too (``latency_from_call_*``), which is how peers are measured:
   their job notes ``time.time()`` as it begins.
4. The worker's peak RSS (``VmHWM`` of /proc/<pid>/status) just before it is stopped.

Each figure is the median of ``--runs`` runs. Peers are installed on first use into their own
virtualenvs under ``--peers-dir`` (their pins, e.g. arq's ``redis<6``, would change the packages
of opsctl's venv); a peer that will not install or run is skipped with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import OPSCTL, base_env, redis_server

from opsctl import __version__ as OPSCTL_VERSION
from opsctl.queue import NewJob, QueueBackend, connect_queue
from opsctl.settings import load_settings, redact_url

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"
SUBJECTS = ("opsctl-redis", "opsctl-sqlite", "arq", "rq", "celery")
PEERS = {  # name → (pip requirement, module that must import)
    "arq": ("arq", "arq"),
    "rq": ("rq", "rq"),
    "celery": ("celery[redis]", "celery"),
}
PRIVATE_DBS = {"arq": 1, "rq": 2, "celery": 3}  # on the private server; opsctl uses db 0
SHARED_DBS = {"arq": 13, "rq": 14, "celery": 15}  # on a --redis-url server; must start empty
DEFAULT_ARQ_POLL_DELAY_S = 0.005
MARKER_BEGIN = "<!-- queue_throughput:begin (written by queue_throughput.py --write-readme) -->"
MARKER_END = "<!-- queue_throughput:end -->"
TARGETS_DOC = "issue 3, 'Targets'"


class Skip(Exception):
    """A subject that cannot be measured here; the message says why."""


@dataclass
class Sample:
    """One run of one subject."""

    enqueue_per_s: float
    process_per_s: float
    rss_mb: float
    latency_ms: list[float]
    latency_from_call_ms: list[float] | None = None


@dataclass
class Row:
    """The medians over the runs of one subject, as printed."""

    name: str
    library: str
    backend: str
    n: int
    settings: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, get: Callable[[Sample], float]) -> float:
        return statistics.median(get(s) for s in self.samples)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "library": self.library,
            "backend": self.backend,
            "n": self.n,
            "enqueue_per_s": round(self.median(lambda s: s.enqueue_per_s)),
            "process_per_s": round(self.median(lambda s: s.process_per_s)),
            "worker_peak_rss_mb": round(self.median(lambda s: s.rss_mb), 1),
            "latency_p50_ms": round(self.median(lambda s: pct(s.latency_ms, 50)), 3),
            "latency_p99_ms": round(self.median(lambda s: pct(s.latency_ms, 99)), 3),
        }
        if all(s.latency_from_call_ms for s in self.samples):
            out["latency_from_call_p50_ms"] = round(
                self.median(lambda s: pct(s.latency_from_call_ms or [], 50)), 3
            )
            out["latency_from_call_p99_ms"] = round(
                self.median(lambda s: pct(s.latency_from_call_ms or [], 99)), 3
            )
        out["runs"] = len(self.samples)
        out["process_per_s_each_run"] = [round(s.process_per_s) for s in self.samples]
        out["settings"] = self.settings
        return out


def pct(values: Sequence[float], p: int) -> float:
    """The ``p``-th percentile (linear between the closest ranks)."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# -- processes -----------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    if match is None:
        raise Skip(f"no VmHWM for pid {pid}")
    return int(match.group(1)) / 1024


@contextmanager
def worker_process(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker running for the block; SIGTERM after it (SIGKILL if it has not left in 30 s)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def check_alive(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is not None:
        tail = log.read_text(errors="replace")[-600:].strip()
        raise Skip(f"the worker exited with code {proc.returncode}: {tail}")


def wait_until(
    done: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout_s: float, what: str
) -> None:
    give_up = time.monotonic() + timeout_s
    while not done():
        check_alive(proc, log)
        if time.monotonic() > give_up:
            raise Skip(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.05)


# -- subjects ------------------------------------------------------------------------------


class Subject:
    """One library on one backend, measured the same way as the others."""

    name: str
    library: str
    backend: str
    settings: str

    def run(self, n: int, latency_jobs: int, timeout_s: float, tmp: Path) -> Sample:
        raise NotImplementedError


class OpsctlSubject(Subject):
    """opsctl: the bench enqueues in-process; ``opsctl daemon worker`` runs the jobs."""

    library = "opsctl"

    def __init__(self, backend: str, redis_url: str, concurrency: int) -> None:
        self.backend = backend
        self.name = f"opsctl-{backend}"
        self.redis_url = redis_url
        self.concurrency = concurrency
        self.settings = (
            f"opsctl {OPSCTL_VERSION}, `opsctl daemon worker --concurrency {concurrency}` "
            "(default lease, heartbeats and maintenance), built-in `noop` kind"
            + (", SQLite file on local disk (ext4)" if backend == "sqlite" else "")
        )

    def run(self, n: int, latency_jobs: int, timeout_s: float, tmp: Path) -> Sample:
        prefix = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        extra = {
            "OPSCTL_DATA_DIR": str(tmp / "data"),
            "OPSCTL_LOG_LEVEL": "WARNING",
            "OPSCTL_REDIS_PREFIX": prefix,
        }
        if self.backend == "redis":
            extra["QUEUE_REDIS_URL"] = self.redis_url
        env = base_env(extra)
        settings = load_settings(env, cwd=tmp)
        argv = [OPSCTL, "daemon", "worker", "--concurrency", str(self.concurrency)]
        try:
            return asyncio.run(self._run(settings, argv, env, tmp, n, latency_jobs, timeout_s))
        finally:
            if self.backend == "redis":
                delete_prefix(self.redis_url, prefix)

    @staticmethod
    async def _run(
        settings: Any,
        argv: list[str],
        env: dict[str, str],
        tmp: Path,
        n: int,
        latency_jobs: int,
        timeout_s: float,
    ) -> Sample:
        """One run on one open queue (opening one per poll would load the scripts each time)."""
        log = tmp / "worker.log"
        queue = await connect_queue(settings)
        try:
            began = time.perf_counter()
            ids = await queue.enqueue_many([NewJob("noop") for _ in range(n)])
            enqueue_s = time.perf_counter() - began
            with worker_process(argv, env, tmp, log) as proc:
                give_up = time.monotonic() + timeout_s
                while True:
                    await asyncio.sleep(0.1)
                    check_alive(proc, log)
                    stats = await queue.stats()
                    if stats.waiting == stats.active == stats.delayed == 0:
                        break
                    if time.monotonic() > give_up:
                        raise Skip(f"draining {n} jobs took over {timeout_s:g} s")
                first, last, not_done = await _window(queue, ids)
                if not_done:
                    raise Skip(f"{not_done} of {n} jobs did not end 'done'")
                latency, from_call = await _opsctl_latency(queue, latency_jobs)
                check_alive(proc, log)
                rss = peak_rss_mb(proc.pid)
        finally:
            await queue.close()
        return Sample(n / enqueue_s, n / (last - first), rss, latency, from_call)


async def _window(queue: QueueBackend, ids: list[str]) -> tuple[float, float, int]:
    """The first ``started_at`` and last ``finished_at`` of the jobs, and how many are not done."""
    infos = []
    for start in range(0, len(ids), 50):  # redis-py's pool holds 100 connections at most
        infos += await asyncio.gather(*(queue.get(i) for i in ids[start : start + 50]))
    done = [i for i in infos if i is not None and i.status == "done"]
    first = min(i.started_at for i in done if i.started_at is not None)
    last = max(i.finished_at for i in done if i.finished_at is not None)
    return first, last, len(ids) - len(done)


async def _opsctl_latency(queue: QueueBackend, jobs: int) -> tuple[list[float], list[float]]:
    """``started_at - created_at`` of single jobs, and ``started_at`` - just before the call."""
    stored, from_call = [], []
    for _ in range(jobs):
        sent = time.time()
        job_id = await queue.enqueue(NewJob("noop"))
        give_up = time.monotonic() + 10
        while True:
            info = await queue.get(job_id)
            if info is not None and info.status == "done" and info.started_at is not None:
                break
            if time.monotonic() > give_up:
                raise Skip("a single job did not run within 10 s")
            await asyncio.sleep(0.001)
        stored.append((info.started_at - info.created_at) * 1000)
        from_call.append((info.started_at - sent) * 1000)
        await asyncio.sleep(random.uniform(0.005, 0.015))
    return stored, from_call


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key this run left under its prefix (the machine's Redis is shared)."""
    client = redis.Redis.from_url(url)
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


class PeerSubject(Subject):
    """A peer library, driven through ``bench/_peers/<name>_peer.py`` in its own virtualenv."""

    backend = "redis"

    def __init__(
        self, name: str, python: Path, redis_url: str, concurrency: int, arq_poll_delay: float
    ) -> None:
        self.name = self.library = name
        self.python = python
        self.redis_url = redis_url
        self.env = base_env(
            {
                "BENCH_REDIS_URL": redis_url,
                "BENCH_CONCURRENCY": str(concurrency),
                "BENCH_ARQ_POLL_DELAY": repr(arq_poll_delay),
                "PYTHONPATH": str(BENCH_DIR),
            }
        )
        self.settings = json.loads(self._driver("describe", timeout_s=120))["settings"]

    def _argv(self, *args: str) -> list[str]:
        return [str(self.python), "-m", f"_peers.{self.name}_peer", *args]

    def _driver(self, *args: str, timeout_s: float, env: dict[str, str] | None = None) -> str:
        try:
            done = subprocess.run(
                self._argv(*args),
                env=env or self.env,
                cwd=BENCH_DIR,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Skip(f"`{' '.join(args)}` took over {timeout_s:g} s") from None
        if done.returncode != 0:
            raise Skip(f"`{' '.join(args)}` failed: {done.stderr.strip()[-600:]}")
        return done.stdout.strip().splitlines()[-1]

    def run(self, n: int, latency_jobs: int, timeout_s: float, tmp: Path) -> Sample:
        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()  # the peer's own database (see PRIVATE_DBS / SHARED_DBS)
        env = {**self.env, "BENCH_N": str(n)}
        log = tmp / "worker.log"
        try:
            enqueue_s = json.loads(self._driver("enqueue", str(n), timeout_s=timeout_s, env=env))[
                "seconds"
            ]
            with worker_process(self._argv("worker"), env, BENCH_DIR, log) as proc:
                wait_until(
                    lambda: client.exists("bench:last") == 1,
                    proc,
                    log,
                    timeout_s,
                    f"draining {n} jobs",
                )
                marks = client.mget("bench:first", "bench:last")
                first, last = (float(v or "nan") for v in marks)
                latency = json.loads(
                    self._driver("latency", str(latency_jobs), timeout_s=timeout_s, env=env)
                )["latencies_ms"]
                check_alive(proc, log)
                rss = peak_rss_mb(proc.pid)
        finally:
            client.flushdb()
            client.close()
        return Sample(n / enqueue_s, n / (last - first), rss, latency)


def peer_python(name: str, peers_dir: Path, install: bool) -> Path:
    """The peer's virtualenv python, creating the venv and installing the peer when needed."""
    requirement, module = PEERS[name]
    venv = peers_dir / f"{name}-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", f"import {module}"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    if not install:
        raise Skip(f"not installed in {venv} (run without --no-install to install it)")
    print(f"bench: installing {requirement} into {venv} ...", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", requirement],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            raise Skip(f"`{' '.join(step)}` took over 600 s") from None
        if done.returncode != 0:
            raise Skip(f"`{' '.join(step)}` failed: {done.stderr.strip()[-400:]}")
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        raise Skip(f"{module} does not import after installing {requirement}")
    return python


def db_url(url: str, db: int) -> str:
    """``url`` with its database number replaced."""
    base, _, tail = url.partition("://")
    host = tail.split("/", 1)[0].split("?", 1)[0]
    query = url.partition("?")[2]
    return f"{base}://{host}/{db}" + (f"?{query}" if query else "")


def check_empty(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        if client.dbsize():
            raise Skip(f"{redact_url(url)} is not empty; not flushing someone else's data")
    finally:
        client.close()


# -- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    text: str
    met: bool | None  # None: not measured in this run
    measured: str


def targets(rows: dict[str, Row]) -> list[Target]:
    """Issue 3's targets, each with what this run measured."""
    medians = {name: row.as_json() for name, row in rows.items()}
    redis_, sqlite_ = medians.get("opsctl-redis"), medians.get("opsctl-sqlite")
    peers = [m | {"name": n} for n, m in medians.items() if m["library"] != "opsctl"]
    fastest = max(peers, key=lambda m: m["process_per_s"], default=None)

    def check(text: str, row: dict[str, Any] | None, key: str, ok: Callable[[float], bool],
              fmt: str) -> Target:  # fmt: skip
        if row is None:
            return Target(text, None, "not measured")
        return Target(text, ok(row[key]), fmt.format(row[key]))

    out = [
        check("Redis backend ≥ 10,000 jobs/s processed by one worker", redis_, "process_per_s",
              lambda v: v >= 10_000, "{:,.0f} jobs/s"),
    ]  # fmt: skip
    if redis_ is None or fastest is None:
        out.append(Target("Redis backend ≥ 5x the fastest peer", None, "not measured"))
    else:
        ratio = redis_["process_per_s"] / fastest["process_per_s"]
        out.append(
            Target(
                "Redis backend ≥ 5x the fastest peer",
                ratio >= 5,
                f"{ratio:.1f}x {fastest['name']} ({fastest['process_per_s']:,} jobs/s)",
            )
        )
    rss = [m["worker_peak_rss_mb"] for m in (redis_, sqlite_) if m is not None]
    return [
        *out,
        check("Bulk enqueue ≥ 40,000 jobs/s (Redis)", redis_, "enqueue_per_s",
              lambda v: v >= 40_000, "{:,.0f} jobs/s"),
        check("Single-job latency p50 < 1.5 ms (Redis)", redis_, "latency_p50_ms",
              lambda v: v < 1.5, "{:.2f} ms"),
        check("Single-job latency p99 < 5 ms (Redis)", redis_, "latency_p99_ms",
              lambda v: v < 5, "{:.2f} ms"),
        check("SQLite backend ≥ 1,000 jobs/s", sqlite_, "process_per_s",
              lambda v: v >= 1_000, "{:,.0f} jobs/s"),
        Target("Worker peak RSS < 70 MB (Redis / SQLite)", max(rss) < 70 if rss else None,
               " / ".join(f"{v:.1f} MB" for v in rss) or "not measured"),
    ]  # fmt: skip


def table(rows: dict[str, Row]) -> str:
    header = ("library", "backend", "enqueue jobs/s", "process jobs/s", "worker peak RSS MB",
              "latency p50 ms", "latency p99 ms")  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows.values():
        j = row.as_json()
        cells = (
            j["library"],
            j["backend"],
            f"{j['enqueue_per_s']:,}",
            f"{j['process_per_s']:,}",
            f"{j['worker_peak_rss_mb']:.1f}",
            f"{j['latency_p50_ms']:.2f}",
            f"{j['latency_p99_ms']:.2f}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(rows: dict[str, Row]) -> list[str]:
    """opsctl-redis against the best peer on each measure."""
    ours = rows.get("opsctl-redis")
    peers = [r for r in rows.values() if r.library != "opsctl"]
    if ours is None or not peers:
        return []
    o = ours.as_json()
    out = []
    for key, label, unit, higher in (
        ("process_per_s", "process", "jobs/s", True),
        ("enqueue_per_s", "enqueue", "jobs/s", True),
        ("latency_p50_ms", "latency p50", "ms", False),
        ("latency_p99_ms", "latency p99", "ms", False),
        ("worker_peak_rss_mb", "worker peak RSS", "MB", False),
    ):
        pick = max if higher else min
        best = pick(peers, key=lambda r, k=key: r.as_json()[k])  # type: ignore[misc]
        ratio = o[key] / best.as_json()[key]
        if not higher:
            ratio = 1 / ratio
        verdict = f"{ratio:.1f}x better" if ratio >= 1 else f"{1 / ratio:.2f}x worse"
        fmt = {"jobs/s": "{:,.0f}", "ms": "{:.2f}", "MB": "{:.1f}"}[unit].format
        out.append(
            f"{label}: opsctl-redis {fmt(o[key])} {unit} vs {best.name} "
            f"{fmt(best.as_json()[key])} {unit} (best peer): {verdict}"
        )
    return out


def describe_machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    return (
        f"{os.cpu_count()} cores (shared), {model or platform.machine()}, "
        f"Python {platform.python_version()}, Redis {''.join(redis_version).removeprefix('v=')}"
    )


METHOD = """\
Method: for each library in turn, in each of the runs, on one Redis (databases apart, opsctl
under a fresh key prefix): n no-op jobs are enqueued in bulk with no worker running (each
library's bulk call) → *enqueue jobs/s*; then one worker process is started and drains them →
*process jobs/s* = n / (first job's start → last job's finish), which leaves interpreter
start-up out (opsctl: the `started_at`/`finished_at` it stores for every job, on the Redis
clock; peers: their worker notes `time.time()` as its first no-op job begins and as its n-th
ends); then, with that worker idle, single jobs are enqueued one at a time, each after the
previous one began plus a random 5-15 ms pause → *latency* p50/p99 (opsctl: `started_at -
created_at` from `queue.get(id)`; peers: from just before the enqueue call to the job's first
line, which for opsctl is `latency_from_call_*` in `--json`); *worker peak RSS* is `VmHWM`
of the worker process just before it is stopped. Each figure is the median of the runs."""


def readme_section(
    rows: dict[str, Row],
    args: argparse.Namespace,
    command: str,
    loads: list[float],
    skipped: list[tuple[str, str]],
) -> str:
    today = dt.date.today().isoformat()
    server = "the Redis at --redis-url" if args.redis_url else "a private redis-server"
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
    lines = [
        MARKER_BEGIN,
        f"Run on {today}: {describe_machine()}; 1-minute load average as runs began: {load}.",
        "",
        f"Command: `{command}` (add `--write-readme` to rewrite this section).",
        "",
        f"n = {args.n:,} no-op jobs, median of {args.runs} runs, {args.latency_jobs} single "
        f"jobs for latency, {server}.",
        "",
        table(rows),
        "",
        *(f"- {r}" for r in ratios(rows)),
        "",
        "Process jobs/s in each run: "
        + "; ".join(
            f"{row.name} " + ", ".join(f"{s.process_per_s:,.0f}" for s in row.samples)
            for row in rows.values()
        )
        + ".",
        "",
        METHOD,
        "",
        "Settings:",
        "",
        *(f"- **{row.name}**: {row.settings}" for row in rows.values()),
        *(f"- **{name}**: skipped: {reason}" for name, reason in skipped),
        "",
        f"Targets ({TARGETS_DOC}):",
        "",
    ]
    for t in targets(rows):
        verdict = {True: "**met**", False: "**not met**", None: "not measured"}[t.met]
        lines.append(f"- {t.text}: {t.measured} — {verdict}")
    lines += ["", MARKER_END]
    return "\n".join(lines)


USAGE = """\
    .venv/bin/python bench/queue_throughput.py [--n 20000] [--runs 3] [--redis-url URL]
        [--only opsctl-redis,opsctl-sqlite,arq,rq,celery] [--json] [--write-readme]"""


def write_readme(section: str) -> None:
    """Replace the generated part of this benchmark's section (between the markers), or add
    the section; the rest of the file, other benchmarks' sections included, is kept."""
    intro = "# Benchmarks\n\nBenchmarks are scripts, not tests: run them by hand.\n"
    text = README.read_text() if README.exists() else intro
    if MARKER_BEGIN in text and MARKER_END in text:
        head, _, rest = text.partition(MARKER_BEGIN)
        _, _, tail = rest.partition(MARKER_END)
        text = head + section + tail
    else:
        heading = "## Queue throughput (issue 3): `bench/queue_throughput.py`"
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{USAGE}\n\n{section}\n"
    README.write_text(text)


# -- main ----------------------------------------------------------------------------------


def build_subjects(
    names: list[str], redis_url: str, private: bool, args: argparse.Namespace
) -> tuple[list[Subject], list[tuple[str, str]]]:
    subjects: list[Subject] = []
    skipped: list[tuple[str, str]] = []
    for name in names:
        try:
            if name.startswith("opsctl-"):
                subjects.append(
                    OpsctlSubject(name.removeprefix("opsctl-"), redis_url, args.concurrency)
                )
                continue
            python = peer_python(name, args.peers_dir, install=not args.no_install)
            url = db_url(redis_url, (PRIVATE_DBS if private else SHARED_DBS)[name])
            if not private:
                check_empty(url)
            subjects.append(PeerSubject(name, python, url, args.concurrency, args.arq_poll_delay))
        except Skip as exc:
            skipped.append((name, str(exc)))
            print(f"bench: skipping {name}: {exc}", file=sys.stderr)
    return subjects, skipped


def measure(
    subjects: list[Subject],
    args: argparse.Namespace,
    skipped: list[tuple[str, str]],
    loads: list[float],
) -> dict[str, Row]:
    """Every subject once a round, ``--runs`` rounds; ``loads`` gets the 1-minute load average
    as each run begins (other work on a shared machine shows there)."""
    rows = {s.name: Row(s.name, s.library, s.backend, args.n, s.settings) for s in subjects}
    failed: set[str] = set()
    for run in range(args.runs):
        for subject in subjects:
            if subject.name in failed:
                continue
            tmp = Path(tempfile.mkdtemp(prefix=f"opsctl-bench-{subject.name}-"))
            began = time.monotonic()
            loads.append(os.getloadavg()[0])
            try:
                sample = subject.run(args.n, args.latency_jobs, args.timeout, tmp)
            except Skip as exc:
                failed.add(subject.name)
                del rows[subject.name]
                skipped.append((subject.name, str(exc)))
                print(f"bench: skipping {subject.name}: {exc}", file=sys.stderr)
                continue
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            rows[subject.name].samples.append(sample)
            print(
                f"bench: run {run + 1}/{args.runs} {subject.name}: "
                f"enqueue {sample.enqueue_per_s:,.0f}/s, process {sample.process_per_s:,.0f}/s, "
                f"RSS {sample.rss_mb:.1f} MB, p50 {pct(sample.latency_ms, 50):.2f} ms, "
                f"p99 {pct(sample.latency_ms, 99):.2f} ms ({time.monotonic() - began:.0f} s, "
                f"load {loads[-1]:.1f})",
                file=sys.stderr,
            )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="jobs a run (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported")
    parser.add_argument(
        "--redis-url",
        help="Redis to use (default: a private redis-server on a free port); peers then use "
        f"databases {', '.join(map(str, SHARED_DBS.values()))}, which must be empty",
    )
    parser.add_argument(
        "--only", default=",".join(SUBJECTS), help="comma list of: " + ", ".join(SUBJECTS)
    )
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--write-readme", action="store_true", help="write the table to README")
    parser.add_argument("--latency-jobs", type=int, default=200, help="single jobs a run")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="opsctl's --concurrency, arq's max_jobs"
    )
    parser.add_argument(
        "--arq-poll-delay",
        type=float,
        default=DEFAULT_ARQ_POLL_DELAY_S,
        help="arq's poll_delay in seconds (default %(default)s; arq's own default is 0.5)",
    )
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "opsctl-bench",
        help="where the peers' virtualenvs live (default %(default)s)",
    )
    parser.add_argument("--no-install", action="store_true", help="skip peers not installed")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds a drain may take before giving up"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUBJECTS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(SUBJECTS)}")
    if args.n < 1 or args.runs < 1 or args.latency_jobs < 2:
        parser.error("--n and --runs must be at least 1, --latency-jobs at least 2")
    args.names = names
    return args


@contextmanager
def redis_for(url: str | None) -> Iterator[tuple[str, bool]]:
    if url:
        yield url, False
        return
    with redis_server() as private_url:
        yield private_url, True


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = ".venv/bin/python bench/queue_throughput.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-readme"
    )
    with redis_for(args.redis_url) as (url, private):
        subjects, skipped = build_subjects(args.names, url, private, args)
        loads: list[float] = []
        rows = measure(subjects, args, skipped, loads)
    if args.json:
        for row in rows.values():
            print(json.dumps(row.as_json()))
    else:
        print(table(rows))
        print()
        for line in ratios(rows):
            print(line)
        print()
        for t in targets(rows):
            verdict = {True: "met", False: "NOT MET", None: "not measured"}[t.met]
            print(f"{t.text}: {t.measured} — {verdict}")
        for name, reason in skipped:
            print(f"skipped {name}: {reason}")
    if args.write_readme:
        write_readme(readme_section(rows, args, command.strip(), loads, skipped))
        print(f"bench: wrote {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
