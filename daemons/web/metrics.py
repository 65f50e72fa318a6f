"""``GET /metrics``: the queue, its workers and the shared rate limiter in Prometheus text format.

One read of the queue (:func:`opsctl.health.snapshot_queue`, the heartbeat's own) per scrape;
the limiter's counters come with it. Operator token required whenever one is configured
(always in production).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from daemons.web.keys import QUEUE, SETTINGS, STORE
from daemons.web.middleware import require_operator
from opsctl.health import snapshot_queue
from opsctl.store import Store
from opsctl.verdict import QueueSnapshot

routes = web.RouteTableDef()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_QUEUE_GAUGES = (
    ("waiting", "waiting", "Jobs ready to run."),
    ("delayed", "delayed", "Jobs waiting for their time (retries, reschedules, schedules)."),
    ("active", "active", "Jobs running under a lease."),
    ("failed", "dead_letters", "Jobs in the dead-letter set."),
    (
        "oldest_waiting_age_s",
        "oldest_waiting_age_seconds",
        "Age of the next job to run, from when it became ready.",
    ),
    ("completed_last_minute", "completed_last_minute", "Jobs completed in the last minute."),
    (
        "delayed_due",
        "delayed_due",
        "Delayed jobs whose run time has come, not yet moved to ready (timers promote them).",
    ),
    (
        "oldest_due_age_s",
        "delayed_overdue_seconds",
        "How far past its run time the most overdue delayed job is (0 when none is due).",
    ),
)
_LIMITER_COUNTERS = (
    ("admitted", "admitted_total", "counter", "Requests the shared rate limiter admitted."),
    ("delayed", "delayed_total", "counter", "Admitted requests that waited for their slot."),
    (
        "refused",
        "refused_total",
        "counter",
        "Asks told to come back with nothing charged (rescheduled, or concurrency full).",
    ),
    ("throttled", "throttled_total", "counter", "Vendor answers with a throttle status."),
    ("paused", "pauses_total", "counter", "Pauses set for every worker from vendor signals."),
    ("pausedForSeconds", "paused_seconds", "gauge", "Seconds until the latest pause ends."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float | int) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Page:
    """Metric families in the exposition format: HELP and TYPE once, then the samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float | int]],
    ) -> None:
        rows = list(samples)
        if not rows:
            return
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in rows:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(
                f"{name}{{{text}}} {_value(value)}" if text else f"{name} {_value(value)}"
            )

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(snapshot: QueueSnapshot, keys: Mapping[str, Any] | None = None) -> str:
    """The page for one queue snapshot and, when given, the keyring's ``key_status`` (pure:
    tests and other faces can call it)."""
    page = _Page()
    backend = {"backend": snapshot.backend}
    page.family(
        "opsctl_queue_up",
        "gauge",
        "Whether the queue backend answered this scrape.",
        [(backend, 1 if snapshot.stats is not None else 0)],
    )
    stats = snapshot.stats
    if stats is not None:
        for attr, name, help_text in _QUEUE_GAUGES:
            page.family(
                f"opsctl_queue_{name}", "gauge", help_text, [(backend, getattr(stats, attr))]
            )
        page.family(
            "opsctl_queue_ping_seconds",
            "gauge",
            "Round trip to the queue backend.",
            [(backend, snapshot.rtt_s or 0.0)],
        )
        workers = sorted(snapshot.workers, key=lambda w: w.heartbeat.id)
        page.family(
            "opsctl_workers",
            "gauge",
            "Worker processes by heartbeat state.",
            [
                ({"state": "alive"}, sum(1 for w in workers if w.live)),
                ({"state": "stale"}, sum(1 for w in workers if not w.live)),
            ],
        )
        # Every role, stale ones included: a process that died long ago no longer changes the
        # heartbeat's status, so this is where it shows until it is forgotten.
        by_role: dict[tuple[str, str], int] = {}
        for view in snapshot.processes:
            key = (view.heartbeat.role or "unknown", "alive" if view.live else "stale")
            by_role[key] = by_role.get(key, 0) + 1
        page.family(
            "opsctl_processes",
            "gauge",
            "Processes seen through their heartbeats, by role and state (stale until forgotten).",
            [({"role": role, "state": state}, n) for (role, state), n in sorted(by_role.items())],
        )
        page.family(
            "opsctl_worker_in_flight",
            "gauge",
            "Jobs a live worker is running.",
            [({"worker": w.heartbeat.id}, w.heartbeat.in_flight) for w in workers if w.live],
        )
        page.family(
            "opsctl_worker_processed_total",
            "counter",
            "Jobs a live worker has finished since it started.",
            [({"worker": w.heartbeat.id}, w.heartbeat.processed) for w in workers if w.live],
        )
    connectors: Mapping[str, Any] = (snapshot.rate_limits or {}).get("connectors", {})
    for field, name, kind, help_text in _LIMITER_COUNTERS:
        page.family(
            f"opsctl_rate_limit_{name}",
            kind,
            help_text,
            [({"connector": c}, counters[field]) for c, counters in sorted(connectors.items())],
        )
    if keys is not None:
        items = sorted(keys.get("keys", []), key=lambda k: str(k["id"]))
        page.family(
            "opsctl_encryption_rows",
            "gauge",
            "Stored credentials under each data key (rotation moves them to the active one).",
            [({"key": str(k["id"]), "state": str(k["state"])}, k["rows"]) for k in items],
        )
        page.family(
            "opsctl_encryption_rows_pending",
            "gauge",
            "Stored credentials not yet on the active data key.",
            [({}, keys.get("pending", 0))],
        )
        page.family(
            "opsctl_encryption_active_key_age_seconds",
            "gauge",
            "Age of the active data key.",
            [({"key": str(k["id"])}, k["age_s"]) for k in items if k["id"] == keys.get("active")],
        )
    return page.text()


async def _key_status(store: Store | None) -> Mapping[str, Any] | None:
    """The keyring's rows per key, or None when it cannot be read (the page still renders)."""
    if store is None:
        return None
    from opsctl.crypto import key_status

    try:
        return await key_status(store)
    except Exception:  # a scrape must not fail because one source did
        return None


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus scrape endpoint; the operator token whenever one is configured."""
    require_operator(request)
    snapshot = await snapshot_queue(request.app.get(QUEUE), request.app[SETTINGS], rate_limits=True)
    keys = await _key_status(request.app.get(STORE))
    return web.Response(
        body=render(snapshot, keys).encode(),
        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
    )


OPENAPI_PATHS: dict[str, Any] = {
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics: queue gauges, workers, shared rate limiter counters",
            "description": "Prometheus text exposition format 0.0.4. `opsctl_queue_*` gauges "
            "(waiting, delayed, active, dead_letters, oldest_waiting_age_seconds, "
            "completed_last_minute, delayed_due, delayed_overdue_seconds, up), "
            "`opsctl_workers{state}`, `opsctl_processes{role,state}`, and per connector "
            "`opsctl_rate_limit_{admitted,delayed,refused,throttled,pauses}_total` and "
            "`opsctl_rate_limit_paused_seconds`. Operator token required when configured "
            "(always in production).",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "the metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": {"description": "operator token required"},
            },
        }
    }
}
