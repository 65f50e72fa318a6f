"""``opsctl deploy-gate``: the pipeline guard. Waits, then passes (0) or fails (1)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from opsctl.cli._checks import paint, render_checks
from opsctl.cli._common import JSON_HELP, print_json, settings_from_env

EPILOG = (
    "Exit codes: 0 every check passed (warnings allowed), 1 a check still failed at the "
    "timeout, 2 usage or configuration error. Sends OPSCTL_API_TOKEN, when set, to get details."
)


def deploy_gate_cmd(
    url: Annotated[
        str | None, typer.Option("--url", help="Base URL of the release (default: APP_URL).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Give up after this many seconds.", min=0.1, max=3600)
    ] = 120.0,
    interval: Annotated[
        float, typer.Option(help="Seconds between rounds of checks.", min=0.05, max=600)
    ] = 2.0,
    canary: Annotated[
        bool, typer.Option("--canary", help="Also prove a worker completes a canary job.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Check the queue, the heartbeat and readiness endpoints, until all pass or time is up."""
    import asyncio

    from opsctl.gate import GateOptions, GateReport, run_gate
    from opsctl.health import CheckResult

    settings = settings_from_env()

    def progress(rounds: int, left: float, results: list[CheckResult]) -> None:
        if quiet:
            return
        failing = "; ".join(f"{r.name}: {r.reason}" for r in results if r.status == "fail")
        sys.stderr.write(
            f"deploy-gate: round {rounds} failed, retrying ({left:.0f} s left): {failing}\n"
        )
        sys.stderr.flush()

    async def gate() -> GateReport:
        resolved = settings
        if settings.api_token_ref:  # OPSCTL_API_TOKEN given as a secret reference
            from opsctl.secrets import create_provider, resolve_settings

            provider = create_provider(settings)
            try:
                resolved = await resolve_settings(settings, provider)
            finally:
                await provider.close()
        options = GateOptions(
            url=url or settings.app_url,
            timeout_s=timeout,
            interval_s=interval,
            canary=canary,
            token=resolved.api_token,
        )
        return await run_gate(resolved, options, progress=progress)

    report = asyncio.run(gate())
    if as_json:
        print_json(report.to_json())
    else:
        render_checks(report.checks)
        verdict = paint(report.status, sys.stdout)
        ending = " (timed out)" if report.timed_out else ""
        sys.stdout.write(
            f"deploy-gate: {verdict} after {report.rounds} round(s), "
            f"{report.elapsed_s:.1f} s{ending} — {report.url}\n"
        )
    if report.status == "fail":
        raise typer.Exit(1)


def standalone(args: list[str]) -> None:
    """Run ``opsctl deploy-gate`` without building the whole CLI: pipelines call it on every
    deploy, so it skips importing every other command group."""
    import typer

    single = typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    single.command(epilog=EPILOG)(deploy_gate_cmd)
    single(args=args, prog_name="opsctl deploy-gate")
