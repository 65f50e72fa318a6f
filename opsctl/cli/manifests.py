"""``opsctl manifests``: the deployment files generated from the topology table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Procfile, ecosystem.config.js, render.yaml and fly.toml, from opsctl/topology.py.",
    no_args_is_help=True,
)


@app.command("generate")
def generate_cmd(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Write nothing; exit 1 with a diff when a file is out of date."
        ),
    ] = False,
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            metavar="PATH",
            file_okay=False,
            help="Where the files live (default: the current directory).",
        ),
    ] = Path("."),
) -> None:
    """Write the deployment manifests, or check that the committed ones are current."""
    from opsctl.manifests import render_all, stale, write

    manifests = render_all()
    if check:
        diffs = stale(directory, manifests)
        if diffs:
            for diff in diffs:
                sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
            typer.echo(
                f"{len(diffs)} of {len(manifests)} manifests differ from the topology;"
                " run `opsctl manifests generate` and commit the result",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"all {len(manifests)} manifests match the topology")
        return
    for manifest, changed in write(directory, manifests):
        typer.echo(f"{'wrote    ' if changed else 'unchanged'} {directory / manifest.path}")
