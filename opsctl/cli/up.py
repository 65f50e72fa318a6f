"""``opsctl up``: run and supervise the whole topology on this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from opsctl.settings import load_settings, read_env_file
from opsctl.topology import TOPOLOGY, plan

EPILOG = (
    "Before starting anything, opsctl up checks the configuration once: in production Redis,"
    " PostgreSQL, OPSCTL_API_TOKEN and OPSCTL_MASTER_KEY_REF must be set; and the configured"
    " Redis must answer and the database accept a connection, within a few seconds. A process"
    " that exits with code 2 (a configuration error) is not restarted: it is marked failed."
    "\n\n"
    "Exit status: 0 after a clean stop (every process drained in time), 130 or 143 when a"
    " process had to be killed after Ctrl-C or SIGTERM, 1 when every process failed,"
    " 2 for bad options or configuration: the check before the start failed, or every"
    " process failed on a configuration error (exit code 2)."
)


def up_cmd(
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="TYPES",
            help="Run only these process types, comma separated (web,worker).",
        ),
    ] = None,
    scale: Annotated[
        list[str] | None,
        typer.Option(
            "--scale",
            metavar="TYPE=N",
            help="Run N instances of TYPE (repeat or comma separate; 0 leaves it out).",
        ),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            metavar="PATH",
            help="Read KEY=value lines from PATH; the environment wins over the file.",
        ),
    ] = None,
) -> None:
    """Run and supervise the topology: prefixed logs, restarts, a graceful stop on Ctrl-C.

    With nothing configured, everything runs on embedded SQLite under the data directory.
    The web process listens on PORT; with --scale web=N, instance K listens on PORT+K-1.
    """
    import asyncio

    from opsctl.preflight import run_preflight
    from opsctl.supervisor import Printer, Supervisor, check_port, default_program, run
    from opsctl.supervisor.control import claim, socket_path

    counts = plan(TOPOLOGY, only=only or (), scale=scale or ())
    environ = dict(os.environ)
    child_env = dict(environ)
    if env_file is not None:
        path = env_file if env_file.is_absolute() else Path.cwd() / env_file
        child_env = {**read_env_file(path), **environ, "OPSCTL_ENV_FILE": str(path)}
    settings = load_settings(environ, env_file=env_file)
    child_env["OPSCTL_DATA_DIR"] = str(settings.data_dir)
    on_terminal = sys.stdout.isatty()
    if on_terminal and not environ.get("OPSCTL_LOG_FORMAT"):
        child_env["OPSCTL_LOG_FORMAT"] = "text"

    # Once, before anything starts: a configuration error is one line and exit 2 here, not a
    # crash loop of every child.
    run_preflight(settings, reachability=True)
    control_path = socket_path(settings.data_dir)
    claim(control_path)  # refuse early: a second supervisor on this data dir, or too long a path
    urls = []
    for ptype in TOPOLOGY:
        for index in range(counts.get(ptype.name, 0) if ptype.serves_http else 0):
            check_port(settings.host, settings.port + index if settings.port else 0)
            urls.append(f"http://{settings.host}:{settings.port + index}")

    supervisor = Supervisor(
        TOPOLOGY,
        counts,
        env=child_env,
        program=default_program(),
        base_port=settings.port,
    )
    printer = Printer(
        sys.stdout, supervisor.names, colour=on_terminal and "NO_COLOR" not in environ
    )
    supervisor.subscribe(printer)
    listening = f"; web on {', '.join(urls)}" if urls and settings.port else ""
    supervisor.notice(
        f"opsctl up: {', '.join(supervisor.names)}{listening}; database"
        f" {settings.database_backend}, queue {settings.queue_backend}, data in"
        f" {settings.data_dir}; Ctrl-C stops"
    )
    code = asyncio.run(run(supervisor, control_path=control_path))
    raise typer.Exit(code)
