"""``opsctl secrets``: check that every secret reference in the settings resolves."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from opsctl.cli._checks import paint
from opsctl.cli._common import JSON_HELP, print_json, settings_from_env

app = typer.Typer(help="Secret providers and references: check they resolve.", no_args_is_help=True)


@app.command("check")
def check_cmd(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Resolve every secret reference in the settings; show fingerprints, never values.

    Exit 1 when the provider does not answer or any reference fails.
    """
    import asyncio

    from opsctl.health import check_secrets
    from opsctl.secrets import ProviderSet, ReferenceCheck, check_references
    from opsctl.verdict import CheckResult, worst

    settings = settings_from_env()

    async def run() -> tuple[CheckResult, list[ReferenceCheck]]:
        providers = ProviderSet(settings, settings.environ)
        try:
            health = await check_secrets(providers.primary)
            return health, await check_references(settings, providers.primary)
        finally:
            await providers.close()

    health, refs = asyncio.run(run())
    status = worst([health.status, *(r.status for r in refs)])
    if as_json:
        print_json(
            {
                "status": status,
                "provider": {
                    "name": settings.secret_manager_provider,
                    "status": health.status,
                    "reason": health.reason,
                    "observed": health.observed,
                    "unit": health.unit,
                },
                "references": [r.to_json() for r in refs],
            }
        )
    else:
        out = sys.stdout
        rtt = f"  [{health.observed} {health.unit}]" if health.observed is not None else ""
        out.write(
            f"provider {settings.secret_manager_provider}: {paint(health.status, out)}"
            f"  {health.reason}{rtt}\n"
        )
        if not refs:
            out.write("no secret references in the settings\n")
        else:
            rows = [("VARIABLE", "REFERENCE", "PROVIDER", "STATUS", "FINGERPRINT / REASON")]
            rows += [
                (r.variable, r.reference, r.provider, r.status, r.fingerprint or r.reason)
                for r in refs
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(4)]
            for row in rows:
                cells = [row[i].ljust(widths[i]) for i in range(4)]
                if row is not rows[0]:
                    cells[3] = paint(row[3], out) + " " * (widths[3] - len(row[3]))
                out.write("  ".join(cells) + "  " + row[4] + "\n")
        out.write(f"secrets: {paint(status, out)}\n")
        out.flush()
    if status == "fail":
        raise typer.Exit(1)
