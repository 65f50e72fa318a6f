"""The web daemon's main: parse, build, serve until a signal, drain, exit 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import NoReturn

from aiohttp import web

from daemons._signals import ShutdownSignal
from daemons.web.app import create_app
from opsctl.constants import WEB_DRAIN_DEADLINE_S
from opsctl.entry import run_entry
from opsctl.errors import OpsctlError
from opsctl.logs import configure_logging
from opsctl.preflight import run_preflight
from opsctl.settings import Settings, load_settings

log = logging.getLogger("opsctl.web")


async def serve(
    settings: Settings,
    *,
    drain_deadline: float = WEB_DRAIN_DEADLINE_S,
    app: web.Application | None = None,
    shutdown: ShutdownSignal | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, finish requests and close."""
    if shutdown is None:
        shutdown = ShutdownSignal()
        shutdown.install()
    app = app or create_app(settings)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=drain_deadline, handle_signals=False
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise OpsctlError(
                f"cannot listen on {settings.host}:{settings.port}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}",
                hint="choose another PORT or stop the process using it",
            ) from None
        port = runner.addresses[0][1] if runner.addresses else settings.port
        log.info(
            "listening on http://%s:%s",
            settings.host,
            port,
            extra={"port": port, "env": settings.env},
        )
        await shutdown.wait()
        log.info("stopping: draining requests for up to %.0f s", drain_deadline)
    finally:
        await runner.cleanup()
    log.info("stopped")


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="opsctl daemon web", description="Run the web daemon.")
    parser.add_argument("--host", help="address to bind (default: OPSCTL_HOST)")
    parser.add_argument("--port", type=int, help="port to bind (default: PORT)")
    args = parser.parse_args(argv)

    def body() -> int:
        settings = load_settings()
        if args.host:
            settings = settings.with_overrides(host=args.host)
        if args.port is not None:
            settings = settings.with_overrides(port=args.port)
        run_preflight(settings)
        configure_logging(settings)
        asyncio.run(serve(settings))
        return 0

    run_entry(body, program="opsctl daemon web")
