"""The Typer application: the root command and its groups."""

from __future__ import annotations

from typing import Annotated

import typer

import opsctl
from opsctl.cli import daemon, db

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
