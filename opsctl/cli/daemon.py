"""``opsctl daemon TYPE``: run one daemon in the foreground, as the manifests do.

The CLI never imports a daemon: it replaces itself with ``python -m daemons.<type>``, so the
process keeps its pid and receives the supervisor's signals directly (PM2, Heroku, Fly).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from opsctl.constants import (
    DEFAULT_LEASE_S,
    DEFAULT_QUEUE,
    JOB_MODULES_ENV,
    ROTATION_BATCH,
    ROTATION_INTERVAL_S,
    SCHEDULER_INTERVAL_S,
    TIMERS_INTERVAL_S,
    WORKER_CONCURRENCY,
    WORKER_DRAIN_DEADLINE_S,
    WORKER_MAINTENANCE_S,
)

EPILOG = (
    "In production (OPSCTL_ENV=production) each daemon checks at start, before it opens"
    " anything, that QUEUE_REDIS_URL (or QUEUE_REDIS_HOST), a PostgreSQL DATABASE_URL,"
    " OPSCTL_API_TOKEN and OPSCTL_MASTER_KEY_REF are set, and names every one missing."
    "\n\n"
    "Exit status: 0 after a clean stop (SIGTERM or SIGINT: drained), 1 when Redis or the"
    " database cannot be reached at start, 2 for bad options or configuration."
)

app = typer.Typer(
    help="Run one bundled daemon in the foreground.", epilog=EPILOG, no_args_is_help=True
)


def exec_daemon(module: str, args: list[str]) -> None:
    """Replace this process with ``python -m <module> <args>``."""
    argv = [sys.executable, "-m", module, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


@app.command("web")
def web(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: OPSCTL_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to bind (default: PORT).")
    ] = None,
) -> None:
    """The aiohttp API and health endpoints."""
    args: list[str] = []
    if host:
        args += ["--host", host]
    if port is not None:
        args += ["--port", str(port)]
    exec_daemon("daemons.web", args)


@app.command("worker")
def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=10_000, help="Jobs run at once.")
    ] = WORKER_CONCURRENCY,
    drain_deadline: Annotated[
        float,
        typer.Option(min=0, help="Seconds running jobs may take to finish after SIGTERM."),
    ] = WORKER_DRAIN_DEADLINE_S,
    modules: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            metavar="MODULE",
            help=f"Module that registers job kinds (repeatable; also {JOB_MODULES_ENV}).",
        ),
    ] = None,
    queue: Annotated[str, typer.Option(help="Queue to take jobs from.")] = DEFAULT_QUEUE,
    lease: Annotated[
        float,
        typer.Option(
            min=1, help="Advanced: lease seconds; a killed worker's jobs return after this long."
        ),
    ] = DEFAULT_LEASE_S,
    maintenance_interval: Annotated[
        float,
        typer.Option(
            min=0,
            hidden=True,
            help="Seconds between fallback promote/requeue calls; 0 leaves them to timers.",
        ),
    ] = WORKER_MAINTENANCE_S,
) -> None:
    """Execute jobs; scale horizontally."""
    args = ["--concurrency", str(concurrency), "--drain-deadline", str(drain_deadline)]
    args += ["--queue", queue, "--lease", str(lease)]
    args += ["--maintenance-interval", str(maintenance_interval)]
    for module in modules or []:
        args += ["--import", module]
    exec_daemon("daemons.worker", args)


@app.command("timers")
def timers(
    queue: Annotated[str, typer.Option(help="Queue to maintain.")] = DEFAULT_QUEUE,
    interval: Annotated[
        float, typer.Option(min=0.01, max=3600, help="Seconds between passes.")
    ] = TIMERS_INTERVAL_S,
) -> None:
    """Move due delayed jobs and retries into the ready queue; requeue lapsed leases."""
    exec_daemon("daemons.timers", ["--queue", queue, "--interval", str(interval)])


@app.command("scheduler")
def scheduler(
    interval: Annotated[
        float, typer.Option(min=0.05, max=60, help="Seconds between passes.")
    ] = SCHEDULER_INTERVAL_S,
) -> None:
    """Turn cron schedules into jobs; safe with several replicas."""
    exec_daemon("daemons.scheduler", ["--interval", str(interval)])


@app.command("encryption-rotation")
def encryption_rotation(
    batch: Annotated[
        int, typer.Option(min=1, max=100_000, help="Rows re-encrypted per transaction.")
    ] = ROTATION_BATCH,
    interval: Annotated[
        float, typer.Option(min=0.05, max=3600, help="Seconds between looks for a new key.")
    ] = ROTATION_INTERVAL_S,
) -> None:
    """Re-encrypt stored credentials to the active data key; rotate keys past their age."""
    exec_daemon("daemons.encryption_rotation", ["--batch", str(batch), "--interval", str(interval)])
