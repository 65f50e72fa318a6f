"""The deploy gate's rounds: the queue's checks and the web daemon's endpoints, until pass.

A pipeline runs the gate before routing traffic to a release. It fails closed: an unreachable
URL, a DNS or TLS failure, a body that is not JSON or a 200 with the wrong shape is a failed
check with its reason, never a pass. Each round runs every check; failed rounds are retried
every ``interval`` seconds until all pass or ``timeout`` ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opsctl.constants import (
    DEPLOY_GATE_INTERVAL_RANGE_S,
    DEPLOY_GATE_INTERVAL_S,
    DEPLOY_GATE_TIMEOUT_RANGE_S,
    DEPLOY_GATE_TIMEOUT_S,
    HEARTBEAT_PATH,
    PRODUCTION_READY_PATH,
    READINESS_PATH,
)
from opsctl.errors import OpsctlError, UsageError
from opsctl.gate.canary import run_canary
from opsctl.gate.fetch import HTTP_TIMEOUT_S, http_get, token_leaves_machine
from opsctl.gate.probes import Fetch, Shape, probe_endpoint
from opsctl.gate.reader import QueueReader, open_reader
from opsctl.settings import Settings
from opsctl.verdict import CheckResult, QueueSnapshot, Status, checks_json, queue_checks, worst

_JOIN_GRACE_S = 1.0  # a DNS lookup is not bound by the socket's timeout


@dataclass(frozen=True)
class GateOptions:
    url: str
    timeout_s: float = DEPLOY_GATE_TIMEOUT_S
    interval_s: float = DEPLOY_GATE_INTERVAL_S
    canary: bool = False
    token: str | None = field(default=None, repr=False)

    def validate(self) -> None:
        """Raise :class:`UsageError` (exit 2) for a URL, a duration or a token the gate cannot
        use; nothing has been sent when it does."""
        if any(c.isspace() or not c.isprintable() for c in self.url):
            raise UsageError(f"--url has a space or control character in it: {self.url!r}")
        try:
            parts = urlsplit(self.url)
        except ValueError as exc:  # an unclosed [ of an IPv6 address
            raise UsageError(f"--url is malformed ({exc}): {self.url!r}") from None
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise UsageError(f"--url has a malformed port: {self.url!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--url must be an http(s) URL, got {self.url!r}")
        low, high = DEPLOY_GATE_TIMEOUT_RANGE_S
        if not low <= self.timeout_s <= high:
            raise UsageError(f"--timeout must be from {low:g} to {high:g} s, got {self.timeout_s}")
        low, high = DEPLOY_GATE_INTERVAL_RANGE_S
        if not low <= self.interval_s <= high:
            raise UsageError(
                f"--interval must be from {low:g} to {high:g} s, got {self.interval_s}"
            )
        if self.token and token_leaves_machine(self.url):
            raise UsageError(
                f"refusing to send OPSCTL_API_TOKEN in clear text to {parts.hostname} over http",
                hint="use an https URL, or run the gate without the token "
                "(OPSCTL_API_TOKEN= opsctl deploy-gate …): it judges the same statuses",
            )


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


Progress = Callable[[int, float, list[CheckResult]], None]
"""Called after each failed round that will be retried: round number, seconds left, checks."""


def run_gate(
    settings: Settings,
    options: GateOptions,
    *,
    fetch: Fetch = http_get,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    reader: Callable[[Settings], QueueReader] = open_reader,
) -> GateReport:
    """Run rounds of checks until all pass or the timeout ends.

    Each round reads the queue on this thread while two threads of a pool GET the heartbeat
    and readiness endpoints, so a round takes about as long as its slowest part.
    """
    options.validate()
    started = clock()
    deadline = started + options.timeout_s
    base = options.url.rstrip("/")
    ready_path = PRODUCTION_READY_PATH if settings.is_production else READINESS_PATH
    probes: list[tuple[str, str, Shape]] = [
        ("heartbeat", base + HEARTBEAT_PATH, "heartbeat"),
        ("readiness", base + ready_path, "health"),
    ]
    pool = ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="deploy-gate")
    queue: QueueReader | None = None
    canary_info: dict[str, Any] | None = None
    rounds = 0
    try:
        while True:
            rounds += 1
            # First, so the web daemon works on its answers while this thread reads the queue.
            pending = [
                pool.submit(
                    probe_endpoint, name, url, token=options.token, shape=shape, fetch=fetch
                )
                for name, url, shape in probes
            ]
            if queue is None:
                try:
                    queue = reader(settings)
                except OpsctlError as exc:
                    snapshot = QueueSnapshot(settings.queue_backend, error=exc.message)
            if queue is not None:
                snapshot = queue.snapshot()
            results = queue_checks(
                snapshot,
                drain_threshold_s=settings.drain_threshold_s,
                production=settings.is_production,
            )
            results.extend(_joined(pending, probes))
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
        pool.shutdown(wait=False, cancel_futures=True)
        if queue is not None:
            queue.close()


def _joined(
    pending: list[Future[CheckResult]], probes: list[tuple[str, str, Shape]]
) -> list[CheckResult]:
    """Each probe's result, waiting at most the HTTP timeout (and a grace) for all of them."""
    give_up = time.monotonic() + HTTP_TIMEOUT_S + _JOIN_GRACE_S
    results = []
    for future, (name, url, _) in zip(pending, probes, strict=True):
        try:
            results.append(future.result(timeout=max(0.0, give_up - time.monotonic())))
        except FutureTimeout:
            reason = f"{url} did not answer within {HTTP_TIMEOUT_S:.0f} s"
            results.append(CheckResult(name, "fail", reason))
    return results
