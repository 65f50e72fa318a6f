"""``opsctl deploy-gate``: the pipeline guard. Waits, then passes (0) or fails (1)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from opsctl.cli._checks import paint, render_checks
from opsctl.cli._common import JSON_HELP, print_json, settings_from_env, with_resolved_secrets
from opsctl.constants import (
    DEPLOY_GATE_INTERVAL_RANGE_S,
    DEPLOY_GATE_INTERVAL_S,
    DEPLOY_GATE_TIMEOUT_RANGE_S,
    DEPLOY_GATE_TIMEOUT_S,
)

if TYPE_CHECKING:
    from opsctl.verdict import CheckResult

EPILOG = (
    "Exit codes: 0 every check passed (warnings allowed), 1 a check still failed at the "
    "timeout, 2 usage or configuration error. Sends OPSCTL_API_TOKEN, when set, to get "
    "details; never in clear text to a host other than this machine (http:// is refused)."
)


def deploy_gate_cmd(
    url: Annotated[
        str | None, typer.Option("--url", help="Base URL of the release (default: APP_URL).")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            help="Give up after this many seconds.",
            min=DEPLOY_GATE_TIMEOUT_RANGE_S[0],
            max=DEPLOY_GATE_TIMEOUT_RANGE_S[1],
        ),
    ] = DEPLOY_GATE_TIMEOUT_S,
    interval: Annotated[
        float,
        typer.Option(
            help="Seconds between rounds of checks.",
            min=DEPLOY_GATE_INTERVAL_RANGE_S[0],
            max=DEPLOY_GATE_INTERVAL_RANGE_S[1],
        ),
    ] = DEPLOY_GATE_INTERVAL_S,
    canary: Annotated[
        bool, typer.Option("--canary", help="Also prove a worker completes a canary job.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Check the queue, the heartbeat and readiness endpoints, until all pass or time is up."""
    from opsctl.gate import GateOptions, run_gate

    settings = with_resolved_secrets(settings_from_env())

    def progress(rounds: int, left: float, results: list[CheckResult]) -> None:
        if quiet:
            return
        failing = "; ".join(f"{r.name}: {r.reason}" for r in results if r.status == "fail")
        shown = f"{left:.1f}" if left < 10 else f"{left:.0f}"
        sys.stderr.write(
            f"deploy-gate: round {rounds} failed, retrying ({shown} s left): {failing}\n"
        )
        sys.stderr.flush()

    options = GateOptions(
        url=settings.app_url if url is None else url,
        timeout_s=timeout,
        interval_s=interval,
        canary=canary,
        token=settings.api_token,
    )
    report = run_gate(settings, options, progress=progress)
    if as_json:
        print_json(report.to_json())
    else:
        render_checks(report.checks)
        verdict = paint(report.status, sys.stdout)
        ending = " (timed out)" if report.timed_out else ""
        typer.echo(
            f"deploy-gate: {verdict} after {report.rounds} round(s), "
            f"{report.elapsed_s:.1f} s{ending} — {report.url}"
        )
    if report.status == "fail":
        raise typer.Exit(1)
