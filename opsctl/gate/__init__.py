"""The deploy gate: what a pipeline runs before it routes traffic to a release.

- :mod:`~opsctl.gate.rounds`: the rounds of checks, retried until pass or the timeout;
- :mod:`~opsctl.gate.reader`: the queue's state read synchronously (redis-py, or the embedded
  SQLite queue on a private event loop), shared with ``opsctl check queue`` and ``opsctl status``;
- :mod:`~opsctl.gate.probes` and :mod:`~opsctl.gate.fetch`: GET the web daemon's heartbeat and
  readiness endpoints and judge their answers (the dashboard judges them the same way);
- :mod:`~opsctl.gate.canary`: a job a worker must complete.

The queue's verdict itself, shared with the web daemon's heartbeat, is :mod:`opsctl.verdict`.
"""

from __future__ import annotations

from opsctl.gate.fetch import HTTP_TIMEOUT_S, HttpAnswer, describe_http_error, http_get
from opsctl.gate.probes import check_endpoint, judge_answer, probe_endpoint
from opsctl.gate.reader import QueueReader, open_reader, read_queue_once
from opsctl.gate.rounds import GateOptions, GateReport, run_gate

__all__ = [
    "HTTP_TIMEOUT_S",
    "GateOptions",
    "GateReport",
    "HttpAnswer",
    "QueueReader",
    "check_endpoint",
    "describe_http_error",
    "http_get",
    "judge_answer",
    "open_reader",
    "probe_endpoint",
    "read_queue_once",
    "run_gate",
]
