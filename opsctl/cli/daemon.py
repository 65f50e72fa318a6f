"""``opsctl daemon TYPE``: run one daemon in the foreground, as the manifests do.

The CLI never imports a daemon: it replaces itself with ``python -m daemons.<type>``, so the
process keeps its pid and receives the supervisor's signals directly (PM2, Heroku, Fly).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

app = typer.Typer(help="Run one bundled daemon in the foreground.", no_args_is_help=True)


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
