"""The canary: a job the gate enqueues and a worker completes, proving the queue drains."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from opsctl.errors import OpsctlError
from opsctl.gate.reader import QueueReader
from opsctl.queue.base import NewJob
from opsctl.verdict import CheckResult

_POLL_FIRST_S = 0.002  # a local worker answers in milliseconds: look often at first
_POLL_S = 0.05
_EAGER_S = 0.5


def canary_id() -> str:
    """``canary-<host>-<pid>-<ms>``: which gate sent it, findable with ``opsctl queue job``."""
    return f"canary-{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000)}"


def run_canary(queue: QueueReader, deadline: float) -> tuple[CheckResult, dict[str, Any]]:
    """Enqueue a canary job and wait until a worker has completed it (or ``deadline``, a
    ``time.monotonic()`` instant)."""
    started = time.monotonic()
    job_id = canary_id()
    try:
        job_id = queue.enqueue(NewJob("canary", {"gate": job_id}, max_attempts=1, job_id=job_id))
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
        time.sleep(_POLL_FIRST_S if time.monotonic() - started < _EAGER_S else _POLL_S)
    return CheckResult(
        "canary",
        "fail",
        f"job {job_id} was not completed before the timeout; are workers consuming the queue?",
    ), info
