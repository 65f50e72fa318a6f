"""The worker daemon: ``opsctl daemon worker`` runs jobs from the queue.

The engine is :mod:`daemons._worker`; this module builds it (:func:`create_worker`) and runs
it until a signal. The first SIGTERM/SIGINT drains (stop reserving, finish running jobs until
the deadline, put the rest back, delete the heartbeat, exit 0); a second one exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import NoReturn

from daemons._signals import ShutdownSignal
from daemons._worker import Worker, WorkerOptions
from opsctl.constants import (
    DEFAULT_LEASE_S,
    DEFAULT_QUEUE,
    JOB_MODULES_ENV,
    WORKER_CONCURRENCY,
    WORKER_DRAIN_DEADLINE_S,
    WORKER_MAINTENANCE_S,
)
from opsctl.entry import run_entry
from opsctl.errors import UsageError
from opsctl.logs import configure_logging
from opsctl.preflight import run_preflight
from opsctl.queue import QueueBackend
from opsctl.queue.kinds import KindRegistry, import_kind_modules, registry
from opsctl.settings import Settings, load_settings

__all__ = ["Worker", "WorkerOptions", "create_worker", "main", "serve"]


def create_worker(
    settings: Settings,
    *,
    kinds: KindRegistry | None = None,
    options: WorkerOptions | None = None,
    backend: QueueBackend | None = None,
    worker_id: str | None = None,
) -> Worker:
    """A worker for the settings' queue; ``await worker.run()`` connects and works."""
    return Worker(
        settings,
        kinds or registry,
        options or WorkerOptions(),
        backend=backend,
        worker_id=worker_id,
    )


async def serve(worker: Worker) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, then drain (a second signal exits at once)."""
    shutdown = ShutdownSignal()
    shutdown.install()
    await worker.run(shutdown.event)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opsctl daemon worker", description="Run jobs from the queue."
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=WORKER_CONCURRENCY,
        help="jobs run at once (default %(default)s)",
    )
    parser.add_argument(
        "--drain-deadline",
        type=_seconds,
        default=WORKER_DRAIN_DEADLINE_S,
        help="seconds running jobs may take to finish after SIGTERM (default %(default)s)",
    )
    parser.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help=f"module that registers job kinds (repeatable; also {JOB_MODULES_ENV})",
    )
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="queue name (default %(default)s)")
    parser.add_argument(
        "--lease",
        type=_seconds,
        default=DEFAULT_LEASE_S,
        help="advanced: lease seconds; a killed worker's jobs return after this long",
    )
    parser.add_argument(
        "--maintenance-interval",
        type=_seconds,
        default=WORKER_MAINTENANCE_S,
        help="advanced: seconds between fallback promote/requeue calls; 0 turns them off",
    )
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)

    def body() -> int:
        settings = load_settings()
        run_preflight(settings)
        configure_logging(settings)
        if args.lease < 1:
            raise UsageError(f"--lease must be at least 1 s, got {args.lease:g}")
        import_kind_modules([*settings.job_modules, *args.modules])
        worker = create_worker(
            settings,
            options=WorkerOptions(
                concurrency=args.concurrency,
                drain_deadline_s=args.drain_deadline,
                queue=args.queue,
                lease_s=args.lease,
                maintenance_s=args.maintenance_interval,
            ),
        )
        asyncio.run(serve(worker))
        return 0

    run_entry(body, program="opsctl daemon worker")


if __name__ == "__main__":
    main()
