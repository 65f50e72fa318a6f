"""The deploy gate: queue checks from settings, then the web daemon's own endpoints, until pass.

A pipeline runs it before routing traffic to a release. It fails closed: an unreachable URL, a
DNS or TLS failure, a body that is not JSON or a 200 with the wrong shape is a failed check with
its reason, never a pass. Each round runs every check; the gate retries failed rounds every
``interval`` seconds until all pass or ``timeout`` ends.
"""

from __future__ import annotations

import _thread
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opsctl._net import hostname
from opsctl.constants import HEARTBEAT_PATH, PRODUCTION_READY_PATH, READINESS_PATH
from opsctl.errors import OpsctlError, UsageError
from opsctl.http_probe import HTTP_TIMEOUT_S, HttpAnswer, describe_http_error, http_get
from opsctl.queue.reader import QueueReader, open_reader
from opsctl.verdict import CheckResult, QueueSnapshot, Status, checks_json, queue_checks, worst

if TYPE_CHECKING:
    from opsctl.settings import Settings

__all__ = [
    "GateOptions",
    "GateReport",
    "check_endpoint",
    "judge_answer",
    "run_gate",
]

_BODY_PREVIEW = 60

Fetch = Callable[[str, dict[str, str], float], HttpAnswer]
"""A GET: the URL, headers and a timeout in; the answer out, or an exception."""
AsyncFetch = Callable[[str, dict[str, str], float], Awaitable[HttpAnswer]]


@dataclass(frozen=True)
class GateReport:
    """What the gate saw in its last round, and how it ended."""

    status: Status
    checks: list[CheckResult]
    rounds: int
    elapsed_s: float
    url: str
    canary: dict[str, Any] | None = None
    timed_out: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "url": self.url,
            "rounds": self.rounds,
            "elapsedSeconds": round(self.elapsed_s, 3),
            "timedOut": self.timed_out,
            "checks": checks_json(self.checks),
            "canary": self.canary,
        }


@dataclass(frozen=True)
class GateOptions:
    url: str
    timeout_s: float = 120.0
    interval_s: float = 2.0
    canary: bool = False
    token: str | None = field(default=None, repr=False)

    def validate(self) -> None:
        if any(c.isspace() or not c.isprintable() for c in self.url):
            raise UsageError(f"--url has a space or control character in it: {self.url!r}")
        try:
            parts = urlsplit(self.url)
        except ValueError as exc:  # an unclosed [ of an IPv6 address
            raise UsageError(f"--url is malformed ({exc}): {self.url!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--url must be an http(s) URL, got {self.url!r}")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise UsageError(f"--url has a malformed port: {self.url!r}") from None
        if not 0 < self.timeout_s <= 3600:
            raise UsageError(f"--timeout must be between 0 and 3600 seconds, got {self.timeout_s}")
        if not 0 < self.interval_s <= 600:
            raise UsageError(f"--interval must be between 0 and 600 seconds, got {self.interval_s}")


def _preview(body: bytes) -> str:
    text = body[:_BODY_PREVIEW].decode("utf-8", "replace").replace("\n", " ")
    return text + ("…" if len(body) > _BODY_PREVIEW else "")


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def judge_answer(name: str, answer: HttpAnswer, ms: float, *, shape: str) -> CheckResult:
    """The check an opsctl health endpoint's answer makes: ``fail`` unless it is JSON of the
    ``shape`` (``heartbeat`` or ``health``) saying pass or warn, with a status below 400."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        kind = answer.content_type.split(";")[0] or "no content type"
        return CheckResult(
            name,
            "fail",
            f"HTTP {answer.status} with a body that is not JSON "
            f"({kind}: {_preview(answer.body)!r})",
            ms,
            "ms",
        )
    status, reasons = _judge(body, shape)
    if status is None:
        hint = " (is the URL the opsctl web daemon?)" if answer.status < 500 else ""
        return CheckResult(
            name,
            "fail",
            f"HTTP {answer.status} with an unexpected body: {reasons[0]}{hint}",
            ms,
            "ms",
        )
    if status == "fail" or answer.status >= 400:
        why = "; ".join(reasons) or "no reason given"
        return CheckResult(name, "fail", f"HTTP {answer.status}, {status}: {why}", ms, "ms")
    reason = f"HTTP {answer.status}, {status}" + (f": {'; '.join(reasons)}" if reasons else "")
    return CheckResult(name, status, reason, ms, "ms")


def probe_endpoint(
    name: str, url: str, *, fetch: Fetch = http_get, token: str | None, shape: str
) -> CheckResult:
    """GET an opsctl health endpoint and judge it; every failure is a ``fail``, never raised."""
    started = time.perf_counter()
    try:
        answer = fetch(url, _auth(token), HTTP_TIMEOUT_S)
    except Exception as exc:  # every transport failure is a failed check, never a crash
        return CheckResult(name, "fail", describe_http_error(url, exc))
    return judge_answer(name, answer, _ms_since(started), shape=shape)


async def check_endpoint(
    name: str, url: str, *, fetch: AsyncFetch, token: str | None, shape: str
) -> CheckResult:
    """:func:`probe_endpoint` over an asynchronous ``fetch`` (the dashboard's HTTP session)."""
    started = time.perf_counter()
    try:
        answer = await fetch(url, _auth(token), HTTP_TIMEOUT_S)
    except Exception as exc:  # every transport failure is a failed check, never a crash
        return CheckResult(name, "fail", describe_http_error(url, exc))
    return judge_answer(name, answer, _ms_since(started), shape=shape)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _judge(body: Any, shape: str) -> tuple[Status | None, list[str]]:
    """The status and reasons of a heartbeat or readiness body; None when the shape is wrong."""
    if shape == "heartbeat":
        inner = body.get("status") if isinstance(body, dict) else None
        value = inner.get("status") if isinstance(inner, dict) else None
        if value not in ("pass", "warn", "fail"):
            return None, [".status.status is not pass, warn or fail"]
        reasons = inner.get("reasons") if isinstance(inner, dict) else None
        return value, [str(r) for r in reasons] if isinstance(reasons, list) else []
    value = body.get("status") if isinstance(body, dict) else None
    if value not in ("pass", "warn", "fail"):
        return None, [".status is not pass, warn or fail"]
    checks = body.get("checks")
    reasons = []
    if isinstance(checks, dict):
        for check_name, check in checks.items():
            if isinstance(check, dict) and check.get("status") != "pass":
                reasons.append(f"{check_name}: {check.get('output', check.get('status'))}")
    return value, reasons


# --- the canary ---------------------------------------------------------------------------


def run_canary(queue: QueueReader, deadline: float) -> tuple[CheckResult, dict[str, Any]]:
    """Enqueue a canary job and wait until a worker has completed it (or the deadline)."""
    from opsctl.queue.base import NewJob

    started = time.monotonic()
    token = f"{hostname()}-{os.getpid()}-{int(time.time() * 1000)}"
    try:
        job_id = queue.enqueue(
            NewJob("canary", {"gate": token}, max_attempts=1, job_id=f"canary-{token}")
        )
    except OpsctlError as exc:
        return CheckResult("canary", "fail", f"could not enqueue the canary: {exc.message}"), {}
    info: dict[str, Any] = {"jobId": job_id}
    while time.monotonic() < deadline:
        try:
            job = queue.get(job_id)
        except OpsctlError as exc:
            return CheckResult("canary", "fail", f"lost the queue: {exc.message}"), info
        if job is not None and job.status == "done":
            rtt = round((time.monotonic() - started) * 1000, 1)
            result = job.result if isinstance(job.result, dict) else {}
            info.update(roundTripMs=rtt, worker=result.get("worker"))
            if result.get("ok") is True:
                return CheckResult(
                    "canary", "pass", f"completed by {result.get('worker')} in {rtt} ms", rtt, "ms"
                ), info
            return CheckResult(
                "canary",
                "fail",
                f"completed with an unexpected result: {str(job.result)[:80]}",
                rtt,
                "ms",
            ), info
        if job is not None and job.status == "dead":
            return CheckResult("canary", "fail", f"dead-lettered: {job.last_error}"), info
        time.sleep(0.002 if time.monotonic() - started < 0.5 else 0.05)
    return CheckResult(
        "canary",
        "fail",
        f"job {job_id} was not completed before the timeout; are workers consuming the queue?",
    ), info


# --- the gate ----------------------------------------------------------------------------


def _endpoints_in_background(
    probes: list[tuple[str, str, str]], *, fetch: Fetch, token: str | None
) -> Callable[[], list[CheckResult]]:
    """Start one thread a probe; the returned function waits for them (at most the HTTP
    timeout and a second: a DNS lookup is not bound by the socket's timeout).

    The threads are ``_thread``'s, the documented low-level API under ``threading``: starting
    one does not wait for it to run, and the module costs nothing to import.
    """
    results: list[CheckResult | None] = [None] * len(probes)
    finished = [_thread.allocate_lock() for _ in probes]

    def probe(i: int, name: str, url: str, shape: str) -> None:
        try:
            results[i] = probe_endpoint(name, url, fetch=fetch, token=token, shape=shape)
        finally:
            finished[i].release()

    for i, p in enumerate(probes):
        finished[i].acquire()
        _thread.start_new_thread(probe, (i, *p))

    def wait() -> list[CheckResult]:
        give_up = time.monotonic() + HTTP_TIMEOUT_S + 1
        for lock in finished:
            lock.acquire(timeout=max(0.0, give_up - time.monotonic()))
        return [
            r
            if r is not None
            else CheckResult(name, "fail", f"{url} did not answer within {HTTP_TIMEOUT_S:.0f} s")
            for r, (name, url, _) in zip(results, probes, strict=True)
        ]

    return wait


def run_gate(
    settings: Settings,
    options: GateOptions,
    *,
    fetch: Fetch = http_get,
    progress: Callable[[int, float, list[CheckResult]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    reader: Callable[[Settings], QueueReader] = open_reader,
) -> GateReport:
    """Run rounds of checks until all pass or the timeout ends.

    Each round reads the queue on this thread while two threads GET the heartbeat and
    readiness endpoints, so a round takes about as long as its slowest part.
    """
    options.validate()
    started = clock()
    deadline = started + options.timeout_s
    base = options.url.rstrip("/")
    ready_path = PRODUCTION_READY_PATH if settings.is_production else READINESS_PATH
    probes = [
        ("heartbeat", base + HEARTBEAT_PATH, "heartbeat"),
        ("readiness", base + ready_path, "health"),
    ]
    queue: QueueReader | None = None
    canary_info: dict[str, Any] | None = None
    rounds = 0
    try:
        while True:
            rounds += 1
            # First, so the web daemon works on its answers while this thread reads the queue.
            endpoints = _endpoints_in_background(probes, fetch=fetch, token=options.token)
            snapshot: QueueSnapshot | None = None
            if queue is None:
                try:
                    queue = reader(settings)
                except OpsctlError as exc:
                    snapshot = QueueSnapshot(settings.queue_backend, error=exc.message)
            if queue is not None:
                snapshot = queue.snapshot()
            assert snapshot is not None  # the reader's, or why there is no reader
            results = queue_checks(snapshot, drain_threshold_s=settings.drain_threshold_s)
            results.extend(endpoints())
            if options.canary and queue is not None and worst(r.status for r in results) != "fail":
                canary, canary_info = run_canary(queue, deadline)
                results.append(canary)
            elif options.canary:
                results.append(CheckResult("canary", "fail", "not run: other checks fail"))
            status = worst(r.status for r in results)
            now = clock()
            if status != "fail":
                return GateReport(status, results, rounds, now - started, base, canary_info)
            if now >= deadline:
                return GateReport(
                    "fail", results, rounds, now - started, base, canary_info, timed_out=True
                )
            if progress is not None:
                progress(rounds, deadline - now, results)
            if queue is not None and snapshot.stats is None:
                queue.close()  # reconnect next round: the backend was lost
                queue = None
            time.sleep(max(0.0, min(options.interval_s, deadline - clock())))
    finally:
        if queue is not None:
            queue.close()
