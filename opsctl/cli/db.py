"""``opsctl db``: schema migrations."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from opsctl.cli._common import JSON_HELP, print_json, settings_from_env

app = typer.Typer(help="Database schema: status and migrations.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


@app.command("migrate")
def migrate_cmd(as_json: JsonFlag = False) -> None:
    """Apply every pending migration (safe to run from several processes at once)."""
    import asyncio

    from opsctl.store import migrate, migration_status, open_store

    settings = settings_from_env()

    async def run() -> dict[str, Any]:
        async with open_store(settings) as store:
            applied = await migrate(store)
            status = await migration_status(store)
            return {
                "database": store.location,
                "backend": store.backend,
                "applied": [{"version": m.version, "name": m.name} for m in applied],
                "version": status.current,
            }

    result = asyncio.run(run())
    if as_json:
        print_json(result)
        return
    for m in result["applied"]:
        typer.echo(f"applied {m['version']:>4}  {m['name']}")
    state = "migrated to" if result["applied"] else "already at"
    typer.echo(f"{result['backend']} {result['database']}: {state} version {result['version']}")


@app.command("status")
def status_cmd(as_json: JsonFlag = False) -> None:
    """Show the schema version and pending migrations; exit 1 when any are pending."""
    import asyncio

    from opsctl.store import migration_status, open_store

    settings = settings_from_env()

    async def run() -> dict[str, Any]:
        async with open_store(settings) as store:
            status = await migration_status(store)
            return {
                "database": store.location,
                "backend": store.backend,
                "version": status.current,
                "latest": status.latest,
                "pending": [{"version": m.version, "name": m.name} for m in status.pending],
            }

    result = asyncio.run(run())
    if as_json:
        print_json(result)
    else:
        typer.echo(
            f"{result['backend']} {result['database']}: version {result['version']}"
            f" of {result['latest']}"
        )
        for m in result["pending"]:
            typer.echo(f"pending {m['version']:>4}  {m['name']}")
    if result["pending"] or result["version"] > result["latest"]:
        raise typer.Exit(1)
