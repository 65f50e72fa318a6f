"""The deploy gate: queue checks from settings, then the web daemon's own endpoints, until pass.

A pipeline runs it before routing traffic to a release. It fails closed: an unreachable URL, a
DNS or TLS failure, a body that is not JSON or a 200 with the wrong shape is a failed check with
its reason, never a pass. Each round runs every check; the gate retries failed rounds every
``interval`` seconds until all pass or ``timeout`` ends.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opsctl.constants import HEARTBEAT_PATH, PRODUCTION_READY_PATH, READINESS_PATH
from opsctl.errors import OpsctlError, UsageError
from opsctl.health import (
    CheckResult,
    QueueSnapshot,
    Status,
    queue_checks,
    snapshot_queue,
    worst,
)
from opsctl.queue import NewJob, QueueBackend, connect_queue
from opsctl.settings import Settings

HTTP_TIMEOUT_S = 5.0
_BODY_PREVIEW = 60


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    content_type: str
    body: bytes


Fetch = Callable[[str, dict[str, str], float], Awaitable[HttpAnswer]]


@dataclass
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
            "checks": [
                {
                    "name": c.name,
                    "status": c.status,
                    "reason": c.reason,
                    "observed": c.observed,
                    "unit": c.unit,
                }
                for c in self.checks
            ],
            "canary": self.canary,
        }


@dataclass
class GateOptions:
    url: str
    timeout_s: float = 120.0
    interval_s: float = 2.0
    canary: bool = False
    token: str | None = field(default=None, repr=False)

    def validate(self) -> None:
        parts = urlsplit(self.url)
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


async def fetch_http(url: str, headers: dict[str, str], timeout_s: float) -> HttpAnswer:
    """GET ``url`` with the standard library's client, off the event loop."""
    return await asyncio.to_thread(_get, url, headers, timeout_s)


def _get(url: str, headers: dict[str, str], timeout_s: float) -> HttpAnswer:
    import http.client

    parts = urlsplit(url)
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        import ssl

        conn = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout_s, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout_s)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("GET", path, headers={"Accept": "application/json", **headers})
        resp = conn.getresponse()
        return HttpAnswer(resp.status, resp.getheader("Content-Type") or "", resp.read(1 << 20))
    finally:
        conn.close()


def describe_http_error(url: str, exc: BaseException) -> str:
    """One sentence for a failed GET: DNS, refused, TLS, timeout."""
    import ssl

    host = urlsplit(url).hostname
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r} ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {host} not trusted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error talking to {host}: {exc.reason or exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"{url} did not answer within {HTTP_TIMEOUT_S:.0f} s"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused"
    if isinstance(exc, OSError):
        return f"cannot connect to {url}: {exc.strerror or exc}"
    return f"request to {url} failed: {type(exc).__name__}: {exc}"


def _preview(body: bytes) -> str:
    text = body[:_BODY_PREVIEW].decode("utf-8", "replace").replace("\n", " ")
    return text + ("…" if len(body) > _BODY_PREVIEW else "")


async def check_endpoint(
    name: str, url: str, *, fetch: Fetch, token: str | None, shape: str
) -> CheckResult:
    """GET an opsctl health endpoint and judge its body; every failure is a ``fail``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.perf_counter()
    try:
        answer = await fetch(url, headers, HTTP_TIMEOUT_S)
    except Exception as exc:  # every transport failure is a failed check, never a crash
        return CheckResult(name, "fail", describe_http_error(url, exc))
    ms = round((time.perf_counter() - started) * 1000, 1)
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


async def run_canary(queue: QueueBackend, deadline: float) -> tuple[CheckResult, dict[str, Any]]:
    """Enqueue a canary job and wait until a worker has completed it (or the deadline)."""
    started = time.monotonic()
    token = f"{socket.gethostname()}-{int(time.time() * 1000)}"
    job_id = await queue.enqueue(NewJob("canary", {"gate": token}, max_attempts=1))
    info: dict[str, Any] = {"jobId": job_id}
    while time.monotonic() < deadline:
        job = await queue.get(job_id)
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
        await asyncio.sleep(0.005 if time.monotonic() - started < 0.5 else 0.05)
    return CheckResult(
        "canary",
        "fail",
        f"job {job_id} was not completed before the timeout; are workers consuming the queue?",
    ), info


async def run_gate(
    settings: Settings,
    options: GateOptions,
    *,
    fetch: Fetch = fetch_http,
    progress: Callable[[int, float, list[CheckResult]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> GateReport:
    """Run rounds of checks until all pass or the timeout ends."""
    options.validate()
    started = clock()
    deadline = started + options.timeout_s
    base = options.url.rstrip("/")
    ready_path = PRODUCTION_READY_PATH if settings.is_production else READINESS_PATH
    queue: QueueBackend | None = None
    canary_info: dict[str, Any] | None = None
    rounds = 0
    try:
        while True:
            rounds += 1
            snapshot = None
            if queue is None:
                try:
                    queue = await connect_queue(settings)
                except OpsctlError as exc:
                    snapshot = QueueSnapshot(settings.queue_backend, error=exc.message)
            if snapshot is None:
                snapshot = await snapshot_queue(queue, settings)
            results = queue_checks(snapshot, drain_threshold_s=settings.drain_threshold_s)
            endpoints = await asyncio.gather(
                check_endpoint(
                    "heartbeat",
                    base + HEARTBEAT_PATH,
                    fetch=fetch,
                    token=options.token,
                    shape="heartbeat",
                ),
                check_endpoint(
                    "readiness", base + ready_path, fetch=fetch, token=options.token, shape="health"
                ),
            )
            results.extend(endpoints)
            if options.canary and queue is not None and worst(r.status for r in results) != "fail":
                canary, canary_info = await run_canary(queue, deadline)
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
            await asyncio.sleep(min(options.interval_s, deadline - now))
            if queue is not None and snapshot.stats is None:
                await queue.close()  # reconnect next round: the backend was lost
                queue = None
    finally:
        if queue is not None:
            await queue.close()
