"""``opsctl schedules``: cron schedules that the scheduler daemon turns into jobs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from opsctl.cli._common import JSON_HELP, print_json, settings_from_env
from opsctl.constants import DEFAULT_QUEUE

if TYPE_CHECKING:  # croniter, the store and asyncio load only when a command runs
    from opsctl.schedules import Schedule
    from opsctl.store import Store

app = typer.Typer(
    help="Cron schedules (UTC) that the scheduler daemon turns into jobs.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
T = TypeVar("T")


def _run(action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the database (migrating it, as the daemons do), run ``action``, close it."""
    import asyncio

    from opsctl.store import migrate, open_store

    settings = settings_from_env()

    async def body() -> T:
        async with open_store(settings) as store:
            await migrate(store)
            return await action(store)

    return asyncio.run(body())


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


@app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="Unique schedule name.", show_default=False)],
    cron: Annotated[
        str,
        typer.Option(
            help="Cron expression in UTC, e.g. '*/5 * * * *' (a 6th field counts seconds).",
            show_default=False,
        ),
    ],
    kind: Annotated[str, typer.Option(help="Job kind to enqueue.", show_default=False)],
    payload: Annotated[
        str | None, typer.Option(help="Job payload as JSON text.", show_default=False)
    ] = None,
    queue: Annotated[str, typer.Option(help="Queue to enqueue into.")] = DEFAULT_QUEUE,
    as_json: JsonFlag = False,
) -> None:
    """Add a schedule; its first job is the next occurrence after now."""
    from opsctl.queue.kinds import registry
    from opsctl.schedules import add_schedule, check_schedule

    check_schedule(name, cron, kind, payload_text=payload)  # before touching the database
    schedule = _run(
        lambda store: add_schedule(store, name, cron, kind, payload_text=payload, queue=queue)
    )
    if kind not in registry:
        print(
            f"note: {kind!r} is not a built-in job kind; workers must load the module that "
            "registers it (--import or OPSCTL_JOB_MODULES)",
            file=sys.stderr,
        )
    if as_json:
        print_json(schedule.to_json())
    else:
        nxt = schedule.to_json()["next_occurrence"]
        typer.echo(f"added schedule {schedule.name}: {schedule.cron}, next at {_when(nxt)}")


@app.command("list")
def list_cmd(as_json: JsonFlag = False) -> None:
    """Every schedule, with its last and next occurrence."""
    from opsctl.schedules import list_schedules

    schedules: list[Schedule] = _run(list_schedules)
    rows = [s.to_json() for s in schedules]
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 240)
    if not rows:
        console.print("no schedules (add one with: opsctl schedules add NAME --cron … --kind …)")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("name", "cron", "kind", "queue", "payload", "last", "next"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"],
            row["cron"],
            row["kind"],
            row["queue"],
            json.dumps(row["payload"]),
            _when(row["last_occurrence"]),
            _when(row["next_occurrence"]) if row["enabled"] else "disabled",
        )
    console.print(table)


@app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument(help="Schedule name.", show_default=False)],
    as_json: JsonFlag = False,
) -> None:
    """Remove a schedule; jobs it already enqueued still run."""
    from opsctl.schedules import remove_schedule

    _run(lambda store: remove_schedule(store, name))
    if as_json:
        print_json({"removed": name})
    else:
        typer.echo(f"removed schedule {name}")


def _toggle(name: str, enabled: bool, as_json: bool) -> None:
    from opsctl.schedules import set_enabled

    schedule, changed = _run(lambda store: set_enabled(store, name, enabled))
    if as_json:
        print_json({**schedule.to_json(), "changed": changed})
        return
    state = "enabled" if enabled else "disabled"
    if not changed:
        typer.echo(f"schedule {name} was already {state}")
    elif enabled:
        nxt = schedule.to_json()["next_occurrence"]
        typer.echo(f"enabled schedule {name}: next at {_when(nxt)} (missed occurrences skipped)")
    else:
        typer.echo(f"disabled schedule {name}; resume it with: opsctl schedules enable {name}")


@app.command("disable")
def disable_cmd(
    name: Annotated[str, typer.Argument(help="Schedule name.", show_default=False)],
    as_json: JsonFlag = False,
) -> None:
    """Pause a schedule: the scheduler enqueues nothing for it until it is enabled again."""
    _toggle(name, False, as_json)


@app.command("enable")
def enable_cmd(
    name: Annotated[str, typer.Argument(help="Schedule name.", show_default=False)],
    as_json: JsonFlag = False,
) -> None:
    """Resume a paused schedule from now; what fell due while it was paused is skipped."""
    _toggle(name, True, as_json)
