"""``opsctl deploy-gate``: the pipeline guard. Waits, then passes (0) or fails (1).

Its options, help and usage errors live here, in Typer like every command; the work is in
:mod:`opsctl.cli._gate_run`, which ``opsctl deploy-gate`` reaches without importing Typer.
"""

from __future__ import annotations

from typing import Annotated

import typer

from opsctl.cli._common import JSON_HELP
from opsctl.cli._gate_run import INTERVAL_RANGE, INTERVAL_S, TIMEOUT_RANGE, TIMEOUT_S, GateArgs

EPILOG = (
    "Exit codes: 0 every check passed (warnings allowed), 1 a check still failed at the "
    "timeout, 2 usage or configuration error. Sends OPSCTL_API_TOKEN, when set, to get details."
)


def deploy_gate_cmd(
    url: Annotated[
        str | None, typer.Option("--url", help="Base URL of the release (default: APP_URL).")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            help="Give up after this many seconds.", min=TIMEOUT_RANGE[0], max=TIMEOUT_RANGE[1]
        ),
    ] = TIMEOUT_S,
    interval: Annotated[
        float,
        typer.Option(
            help="Seconds between rounds of checks.", min=INTERVAL_RANGE[0], max=INTERVAL_RANGE[1]
        ),
    ] = INTERVAL_S,
    canary: Annotated[
        bool, typer.Option("--canary", help="Also prove a worker completes a canary job.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Check the queue, the heartbeat and readiness endpoints, until all pass or time is up."""
    from opsctl.cli import _gate_run

    args = GateArgs(url, timeout, interval, canary, as_json, quiet)
    code = _gate_run.execute(args)
    if code:
        raise typer.Exit(code)


def standalone(args: list[str]) -> None:
    """``opsctl deploy-gate`` as a one-command Typer app, for what the fast path leaves to
    Typer (help, usage errors) without building every other command group."""
    single = typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    single.command(epilog=EPILOG)(deploy_gate_cmd)
    single(args=args, prog_name="opsctl deploy-gate")
