"""``opsctl dashboard``: the Textual TUI over the supervisor, the queue and the web daemon."""

from __future__ import annotations

from typing import Annotated

import typer

from opsctl.cli._common import settings_from_env, with_resolved_secrets

EPILOG = (
    "Keys: 1-7 panes, j/k or arrows, / filter, r restart (or retry a dead letter), s stop, "
    "p/d promote/demote, f follow the log, ? help, q quit. Reads the supervisor of "
    "OPSCTL_DATA_DIR, the queue, and the web daemon at --url; sends OPSCTL_API_TOKEN, when "
    "set, never in clear text to another machine (http:// to another host is refused)."
)


def dashboard_cmd(
    url: Annotated[
        str | None, typer.Option("--url", help="Base URL of the web daemon (default: APP_URL).")
    ] = None,
    refresh: Annotated[
        float, typer.Option("--refresh", help="Seconds between refreshes.", min=0.2, max=3600)
    ] = 2.0,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Watch only: no restart, stop, retry or promote.")
    ] = False,
) -> None:
    """Watch and operate the platform live: processes, queue, gate, connectors, limits, logs."""
    import asyncio

    from opsctl.gate import GateOptions
    from opsctl.tui.app import DashboardApp
    from opsctl.tui.sources import Sources

    settings = with_resolved_secrets(settings_from_env())
    base = settings.app_url if url is None else url
    # The same rules as deploy-gate's --url, the token's included: never in clear text
    # to another machine.
    GateOptions(url=base, token=settings.api_token).validate()

    async def run() -> None:
        async with Sources(settings, url=base, token=settings.api_token) as sources:
            await DashboardApp(sources, refresh_s=refresh, read_only=read_only).run_async()

    asyncio.run(run())
