"""``opsctl workers``: the processes seen through their heartbeats; forget the stale ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from opsctl.cli._common import JSON_HELP, print_json, settings_from_env
from opsctl.cli.processes import heartbeat_json, print_heartbeats
from opsctl.constants import HEARTBEAT_FORGET_S, HEARTBEAT_TTL_S
from opsctl.errors import UsageError

if TYPE_CHECKING:  # the queue and asyncio load only when a command runs
    from opsctl.queue import HeartbeatView, QueueBackend

app = typer.Typer(
    help="Processes seen through their heartbeats: list them, forget the stale ones.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain Click help: paragraphs rewrapped to the terminal
)

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
T = TypeVar("T")


def _run(action: Callable[[QueueBackend], Awaitable[T]]) -> T:
    """Open the queue the environment names (heartbeats live beside it), run, close."""
    import asyncio

    from opsctl.queue import open_queue

    settings = settings_from_env()

    async def body() -> T:
        async with open_queue(settings) as backend:
            return await action(backend)

    return asyncio.run(body())


@app.command("list")
def list_cmd(
    all_roles: Annotated[
        bool,
        typer.Option(
            "--all", help="Every process that beats (web, scheduler, timers…), not only workers."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Workers by heartbeat: live or stale, role, last seen, in flight, processed, version.

    A process that stops beating without a clean exit (killed, cut off) stays here as stale
    for an hour, or until `opsctl workers forget`. Exit 0 whatever the states.
    """

    async def collect(backend: QueueBackend) -> list[HeartbeatView]:
        return await backend.heartbeats(ttl_s=HEARTBEAT_TTL_S)

    views = [v for v in _run(collect) if all_roles or v.heartbeat.role == "worker"]
    views.sort(key=lambda v: (v.heartbeat.role, v.heartbeat.id))
    live = sum(1 for v in views if v.live)
    if as_json:
        print_json(
            {
                "processes": [heartbeat_json(v) for v in views],
                "live": live,
                "stale": len(views) - live,
            }
        )
        return
    what = "processes" if all_roles else "workers"
    if not views:
        hint = "" if all_roles else " (--all lists every role)"
        typer.echo(f"no {what} beating against this queue{hint}")
        return
    print_heartbeats(views, id_header="ID")
    typer.echo(f"\n{live} live, {len(views) - live} stale {what}")


@app.command("forget")
def forget_cmd(
    ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="ID", help="Process ids (host:pid), as listed.", show_default=False),
    ] = None,
    stale: Annotated[
        bool, typer.Option("--stale", help="Forget every process whose heartbeat lapsed.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Forget a live process too (it reappears at its next beat)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Forget stale processes: their heartbeat, index entry and last record.

    A process killed without a clean exit is listed as stale for an hour unless forgotten.
    Refuses a process that still beats (exit 1) unless --force; an id no heartbeat carries is
    exit 1 too, and then nothing is forgotten. Give ids or --stale (exit 2 otherwise).
    """
    from opsctl.queue.heartbeat import forget_processes, forget_stale

    if ids and stale:
        raise UsageError("give process ids or --stale, not both")
    if not ids and not stale:
        raise UsageError(
            "say which processes to forget: ids, or --stale",
            hint="see: opsctl workers list --all",
        )
    selected = list(ids or [])

    async def forget(backend: QueueBackend) -> list[str]:
        if stale:
            return await forget_stale(backend, ttl_s=HEARTBEAT_TTL_S)
        return await forget_processes(backend, selected, force=force, ttl_s=HEARTBEAT_TTL_S)

    forgotten = _run(forget)
    if as_json:
        print_json({"forgotten": forgotten, "count": len(forgotten)})
        return
    if not forgotten:
        typer.echo(
            f"no stale process to forget (stale ones are forgotten {HEARTBEAT_FORGET_S / 3600:g} h"
            " after their last beat anyway)"
        )
        return
    for process_id in forgotten:
        typer.echo(f"forgot {process_id}")
