"""``opsctl check queue``: the heartbeat's queue verdict, from settings alone (no web daemon)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from opsctl.cli._checks import paint, render_checks
from opsctl.cli._common import JSON_HELP, print_json, settings_from_env

app = typer.Typer(help="Health checks that need no web daemon.", no_args_is_help=True)


@app.command("queue")
def queue_cmd(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Check the queue as the heartbeat does: backend, workers, draining, promotion.

    Exit 1 when a check fails (a deploy must halt); warnings and dead letters exit 0.
    """
    from opsctl.gate.reader import read_queue_once  # as the deploy gate reads it
    from opsctl.verdict import checks_json, queue_checks, worst

    settings = settings_from_env()
    snapshot = read_queue_once(settings)
    results = queue_checks(
        snapshot, drain_threshold_s=settings.drain_threshold_s, production=settings.is_production
    )
    status = worst(r.status for r in results)
    if as_json:
        print_json(
            {"status": status, "backend": settings.queue_backend, "checks": checks_json(results)}
        )
    else:
        render_checks(results)
        sys.stdout.write(f"queue: {paint(status, sys.stdout)}\n")
    if status == "fail":
        raise typer.Exit(1)
