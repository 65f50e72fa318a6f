"""The Typer application: the root command and its groups."""

from __future__ import annotations

from typing import Annotated

import typer

import opsctl
from opsctl.cli import check, daemon, db, gate, processes, queue, run, schedules, up
from opsctl.cli import connectors as connectors_cli
from opsctl.cli import dashboard as dashboard_cli
from opsctl.cli import keys as keys_cli
from opsctl.cli import manifests as manifests_cli
from opsctl.cli import ratelimits as ratelimits_cli
from opsctl.cli import secrets as secrets_cli

app = typer.Typer(
    name="opsctl",
    help="Run, check and operate the connector platform and its daemons.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(daemon.app, name="daemon")
app.add_typer(db.app, name="db")
app.add_typer(queue.app, name="queue")
app.add_typer(schedules.app, name="schedules")
app.add_typer(manifests_cli.app, name="manifests")
app.command("up", epilog=up.EPILOG)(up.up_cmd)
app.command("status")(processes.status_cmd)
app.command("restart")(processes.restart_cmd)
app.command("stop")(processes.stop_cmd)
app.add_typer(check.app, name="check")
app.add_typer(secrets_cli.app, name="secrets")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(connectors_cli.app, name="connectors")
app.command("deploy-gate", epilog=gate.EPILOG)(gate.deploy_gate_cmd)
app.command("run", epilog=run.EPILOG)(run.run_cmd)
app.command("dashboard", epilog=dashboard_cli.EPILOG)(dashboard_cli.dashboard_cmd)
app.command("rate-limits", epilog=ratelimits_cli.EPILOG)(ratelimits_cli.rate_limits_cmd)


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
