"""``opsctl deploy-gate`` without Typer: the options read from argv, the gate run, the verdict.

Pipelines run the gate on every deploy, so ``opsctl deploy-gate ...`` is answered from here
with the standard library alone. :func:`parse` reads only the forms it is sure of; anything
else (``--help``, a typo, a bad value) returns ``None`` and the Typer command in
:mod:`opsctl.cli.gate` answers, with the same options, help and usage errors as every command.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsctl.settings import Settings
    from opsctl.verdict import CheckResult

TIMEOUT_S = 120.0
TIMEOUT_RANGE = (0.1, 3600.0)
INTERVAL_S = 2.0
INTERVAL_RANGE = (0.05, 600.0)


@dataclass(frozen=True)
class GateArgs:
    """The options of ``opsctl deploy-gate``."""

    url: str | None = None
    timeout: float = TIMEOUT_S
    interval: float = INTERVAL_S
    canary: bool = False
    as_json: bool = False
    quiet: bool = False


_FLAGS = {"--canary": "canary", "--json": "as_json", "--quiet": "quiet", "-q": "quiet"}
_VALUES = {"--url": "url", "--timeout": "timeout", "--interval": "interval"}
_RANGES = {"timeout": TIMEOUT_RANGE, "interval": INTERVAL_RANGE}


def parse(args: list[str]) -> GateArgs | None:
    """The options, or ``None`` when Typer must answer (help, unknown or malformed input)."""
    found: dict[str, object] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in _FLAGS:
            found[_FLAGS[arg]] = True
            continue
        name, equals, value = arg.partition("=")
        if name not in _VALUES:
            return None
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        field = _VALUES[name]
        if field == "url":
            found[field] = value
            continue
        try:
            number = float(value)
        except ValueError:
            return None
        low, high = _RANGES[field]
        if not (math.isfinite(number) and low <= number <= high):
            return None
        found[field] = number
    return GateArgs(**found)  # type: ignore[arg-type]


def execute(args: GateArgs) -> int:
    """Run the gate and print its verdict; 0 pass (warnings allowed), 1 fail.

    Raises :class:`~opsctl.errors.OpsctlError` (exit 2) for a bad URL or configuration.
    """
    from opsctl.gate import GateOptions, run_gate
    from opsctl.settings import load_settings

    settings = load_settings()

    def progress(rounds: int, left: float, results: list[CheckResult]) -> None:
        if args.quiet:
            return
        failing = "; ".join(f"{r.name}: {r.reason}" for r in results if r.status == "fail")
        shown = f"{left:.1f}" if left < 10 else f"{left:.0f}"
        sys.stderr.write(
            f"deploy-gate: round {rounds} failed, retrying ({shown} s left): {failing}\n"
        )
        sys.stderr.flush()

    options = GateOptions(
        url=args.url or settings.app_url,
        timeout_s=args.timeout,
        interval_s=args.interval,
        canary=args.canary,
        token=_token(settings),
    )
    report = run_gate(settings, options, progress=progress)
    if args.as_json:
        from opsctl.cli._common import print_json

        print_json(report.to_json())
    else:
        from opsctl.cli._checks import paint, render_checks

        render_checks(report.checks)
        verdict = paint(report.status, sys.stdout)
        ending = " (timed out)" if report.timed_out else ""
        sys.stdout.write(
            f"deploy-gate: {verdict} after {report.rounds} round(s), "
            f"{report.elapsed_s:.1f} s{ending} — {report.url}\n"
        )
        sys.stdout.flush()
    return 1 if report.status == "fail" else 0


def _token(settings: Settings) -> str | None:
    """OPSCTL_API_TOKEN, resolved through the secret provider when it is a reference."""
    if not settings.api_token_ref:
        return settings.api_token
    import asyncio

    from opsctl.secrets import create_provider, resolve_settings

    async def resolve() -> str | None:
        provider = create_provider(settings)
        try:
            return (await resolve_settings(settings, provider)).api_token
        finally:
            await provider.close()

    return asyncio.run(resolve())
