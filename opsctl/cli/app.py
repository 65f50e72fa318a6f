"""The root ``opsctl`` command: a lazy group that imports a command's module when it runs.

Click's lazy-group pattern: the root lists each command with the one-line summary written
here, and imports the module behind a command only when that command is called (or its own
``--help`` asked for). ``opsctl --help`` and ``opsctl deploy-gate`` therefore load Typer and
the one module they need, not every command's dependencies. A test checks that each summary
here is the first line of that command's own help.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import opsctl


@dataclass(frozen=True)
class Entry:
    """One command of the root: where it lives (``module:attribute``) and what it does.

    The attribute is a Typer app (a command group) or a command function; a function is
    registered with the module's ``EPILOG`` when it has one.
    """

    target: str
    summary: str


COMMANDS: dict[str, Entry] = {
    "up": Entry(
        "opsctl.cli.up:up_cmd",
        "Run and supervise the topology: prefixed logs, restarts, a graceful stop on Ctrl-C.",
    ),
    "status": Entry(
        "opsctl.cli.processes:status_cmd",
        "Show the fleet: supervised processes, every heartbeat, the queue and its verdict.",
    ),
    "dashboard": Entry(
        "opsctl.cli.dashboard:dashboard_cmd",
        "Watch and operate the platform live: processes, queue, gate, connectors, limits, logs.",
    ),
    "restart": Entry(
        "opsctl.cli.processes:restart_cmd",
        "Restart every instance of TYPE, or one instance TYPE.N (a failed one gets a new chance).",
    ),
    "stop": Entry(
        "opsctl.cli.processes:stop_cmd",
        "Stop TYPE or TYPE.N (drained, killed at its kill timeout); `opsctl restart` starts it.",
    ),
    "daemon": Entry("opsctl.cli.daemon:app", "Run one bundled daemon in the foreground."),
    "deploy-gate": Entry(
        "opsctl.cli.gate:deploy_gate_cmd",
        "Check the queue, the heartbeat and readiness endpoints, until all pass or time is up.",
    ),
    "check": Entry("opsctl.cli.check:app", "Health checks that need no web daemon."),
    "workers": Entry(
        "opsctl.cli.workers:app",
        "Processes seen through their heartbeats: list them, forget the stale ones.",
    ),
    "queue": Entry("opsctl.cli.queue:app", "The job queue: stats, jobs, the dead-letter set."),
    "schedules": Entry(
        "opsctl.cli.schedules:app",
        "Cron schedules (UTC) that the scheduler daemon turns into jobs.",
    ),
    "manifests": Entry(
        "opsctl.cli.manifests:app",
        "Procfile, ecosystem.config.js, render.yaml and fly.toml, from opsctl/topology.py.",
    ),
    "run": Entry(
        "opsctl.cli.run:run_cmd",
        "Queue an execution of a connector operation; with --wait, print its records.",
    ),
    "connectors": Entry(
        "opsctl.cli.connectors:app",
        "Connector definitions: validate the JSON files that describe vendor APIs.",
    ),
    "rate-limits": Entry(
        "opsctl.cli.ratelimits:rate_limits_cmd",
        "Vendor rate limits derived for a topology, and reverse-proxy lines to paste.",
    ),
    "db": Entry("opsctl.cli.db:app", "Database schema: status and migrations."),
    "keys": Entry(
        "opsctl.cli.keys:app",
        "Data keys that encrypt stored credentials: status, rotation, retirement.",
    ),
    "secrets": Entry(
        "opsctl.cli.secrets:app", "Secret providers and references: check they resolve."
    ),
}


def load_command(name: str) -> Any:
    """Import the module behind ``name`` and build its Click command (Typer's own Click)."""
    entry = COMMANDS[name]
    module_name, _, attribute = entry.target.partition(":")
    module = importlib.import_module(module_name)
    target: Any = getattr(module, attribute)
    command: Any  # Typer's own Click types are private to it
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)  # a group, even of one command
    else:  # a command function: a Typer app of one command is that command
        single = typer.Typer(
            add_completion=False,  # the root offers completion for every command
            context_settings={"help_option_names": ["-h", "--help"]},
        )
        single.command(name, epilog=getattr(module, "EPILOG", None))(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """Lists :data:`COMMANDS` without importing them; imports one when it is invoked."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        return load_command(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list from the summaries above: ``opsctl --help`` imports no command."""
        rows = [(name, entry.summary) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="opsctl",
    cls=LazyGroup,
    help="Run, check and operate the connector platform and its daemons.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Run 'opsctl COMMAND --help' for the options of a command.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"opsctl {opsctl.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Run, check and operate the connector platform and its daemons."""
