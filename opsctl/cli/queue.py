"""``opsctl queue``: inspect the job queue, enqueue jobs, retry or purge dead-lettered ones."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from opsctl.cli._common import JSON_HELP, print_json, settings_from_env
from opsctl.constants import DEFAULT_QUEUE, HEARTBEAT_TTL_S
from opsctl.errors import NotFound, UsageError

if TYPE_CHECKING:  # the queue, asyncio and croniter load only when a command runs
    from opsctl.queue import JobInfo, QueueBackend

app = typer.Typer(help="The job queue: stats, jobs, the dead-letter set.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
QueueName = Annotated[str, typer.Option("--queue", "-q", help="Queue name.")]
T = TypeVar("T")


def _run(queue: str, action: Callable[[QueueBackend], Awaitable[T]]) -> T:
    """Open the queue the environment names, run ``action`` on it, close it."""
    import asyncio

    from opsctl.queue import open_queue

    settings = settings_from_env()

    async def body() -> T:
        async with open_queue(settings, queue=queue) as backend:
            return await action(backend)

    return asyncio.run(body())


def _ago(epoch: float | None, now: float) -> str:
    if not epoch:
        return "-"
    seconds = max(0.0, now - epoch)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def _job_json(info: JobInfo) -> dict[str, Any]:
    return asdict(info)


def _console() -> Any:
    from rich.console import Console

    # Piped into grep or a file, a table keeps one line per row rather than 80 columns.
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 240)


def _table(title: str, columns: list[str]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


@app.command("stats")
def stats_cmd(queue: QueueName = DEFAULT_QUEUE, as_json: JsonFlag = False) -> None:
    """Waiting, delayed, active and dead jobs, throughput, and the processes beating."""

    async def collect(backend: QueueBackend) -> dict[str, Any]:
        stats = await backend.stats()
        beats = await backend.heartbeats(ttl_s=HEARTBEAT_TTL_S)
        return {
            "queue": queue,
            **asdict(stats),
            "processes": [
                {
                    **asdict(view.heartbeat),
                    "last_seen": view.last_seen,
                    "age_s": round(view.age_s, 3),
                    "live": view.live,
                }
                for view in sorted(beats, key=lambda v: (v.heartbeat.role, v.heartbeat.id))
            ],
        }

    result = _run(queue, collect)
    if as_json:
        print_json(result)
        return
    console = _console()
    table = _table(f"queue {queue} ({result['backend']})", ["state", "jobs"])
    table.add_row("waiting", str(result["waiting"]))
    table.add_row("delayed", str(result["delayed"]))
    table.add_row("active", str(result["active"]))
    table.add_row("dead", str(result["failed"]))
    table.add_row("oldest waiting", f"{result['oldest_waiting_age_s']:.1f} s")
    table.add_row("completed, last minute", str(result["completed_last_minute"]))
    console.print(table)
    processes = result["processes"]
    if not processes:
        console.print("no process heartbeats")
        return
    procs = _table("processes", ["id", "role", "state", "last beat", "in flight", "processed"])
    for p in processes:
        state = "live" if p["live"] else "[red]stale[/red]"
        procs.add_row(
            p["id"],
            p["role"],
            state,
            f"{p['age_s']:.1f}s ago",
            str(p["in_flight"]),
            str(p["processed"]),
        )
    console.print(procs)


@app.command("dead")
def dead_cmd(
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Most jobs to list.")] = 100,
    queue: QueueName = DEFAULT_QUEUE,
    as_json: JsonFlag = False,
) -> None:
    """Dead-lettered jobs, newest first, with the reason each one died."""
    jobs = _run(queue, lambda backend: backend.dead(limit))
    if as_json:
        print_json([_job_json(j) for j in jobs])
        return
    console = _console()
    if not jobs:
        console.print(f"no dead jobs in queue {queue}")
        return
    now = time.time()
    table = _table(f"dead jobs in {queue}", ["id", "kind", "attempts", "died", "reason"])
    for job in jobs:
        table.add_row(
            job.id,
            job.kind,
            f"{job.attempts}/{job.max_attempts}",
            _ago(job.finished_at, now),
            job.last_error or "-",
        )
    console.print(table)


def _check_selection(ids: list[str] | None, all_: bool, verb: str) -> list[str] | None:
    if ids and all_:
        raise UsageError(f"give job ids or --all to {verb}, not both")
    if not ids and not all_:
        raise UsageError(f"say which dead jobs to {verb}: job ids, or --all")
    return None if all_ else list(dict.fromkeys(ids or []))


async def _require_dead(backend: QueueBackend, ids: list[str]) -> None:
    import asyncio

    infos = await asyncio.gather(*(backend.get(i) for i in ids))
    missing = [i for i, info in zip(ids, infos, strict=True) if info is None]
    alive = [i for i, info in zip(ids, infos, strict=True) if info and info.status != "dead"]
    problems = []
    if missing:
        problems.append(f"no job {', '.join(missing)}")
    if alive:
        problems.append(f"not dead-lettered: {', '.join(alive)}")
    if problems:
        raise NotFound("; ".join(problems), hint="see: opsctl queue dead")


Ids = Annotated[list[str] | None, typer.Argument(help="Dead job ids.", show_default=False)]
AllFlag = Annotated[bool, typer.Option("--all", help="Every dead job.")]


@app.command("retry-dead")
def retry_dead_cmd(
    ids: Ids = None,
    all_: AllFlag = False,
    queue: QueueName = DEFAULT_QUEUE,
    as_json: JsonFlag = False,
) -> None:
    """Put dead jobs back in the ready queue with a fresh attempt count."""
    selected = _check_selection(ids, all_, "retry")

    async def retry(backend: QueueBackend) -> int:
        if selected is not None:
            await _require_dead(backend, selected)
        return await backend.retry_dead(selected)

    count = _run(queue, retry)
    if as_json:
        print_json({"queue": queue, "retried": count})
    else:
        typer.echo(f"retried {count} dead job(s) in queue {queue}")


@app.command("purge-dead")
def purge_dead_cmd(
    ids: Ids = None,
    all_: AllFlag = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    queue: QueueName = DEFAULT_QUEUE,
    as_json: JsonFlag = False,
) -> None:
    """Delete dead jobs for good."""
    selected = _check_selection(ids, all_, "purge")
    if not yes:
        what = "every dead job" if selected is None else f"{len(selected)} dead job(s)"
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to purge {what} without confirmation", hint="add --yes")
        if not typer.confirm(f"Delete {what} in queue {queue} for good?"):
            raise typer.Exit(1)

    async def purge(backend: QueueBackend) -> int:
        if selected is not None:
            await _require_dead(backend, selected)
        return await backend.purge_dead(selected)

    count = _run(queue, purge)
    if as_json:
        print_json({"queue": queue, "purged": count})
    else:
        typer.echo(f"purged {count} dead job(s) from queue {queue}")


@app.command("enqueue")
def enqueue_cmd(
    kind: Annotated[str, typer.Argument(help="Job kind, e.g. canary.", show_default=False)],
    payload: Annotated[
        str | None, typer.Option(help="Payload as JSON text.", show_default=False)
    ] = None,
    delay: Annotated[
        float | None, typer.Option(min=0, help="Seconds before it may run.", show_default=False)
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Enqueue once per key (for a day).", show_default=False),
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option(min=1, max=1000, help="Runs before it is dead-lettered.")
    ] = None,
    queue: QueueName = DEFAULT_QUEUE,
    as_json: JsonFlag = False,
) -> None:
    """Add one job; print its id."""
    from opsctl.queue import NewJob
    from opsctl.queue.kinds import check_kind_name
    from opsctl.schedules import parse_payload

    check_kind_name(kind)
    job = NewJob(
        kind=kind,
        payload=parse_payload(payload),
        delay_s=delay,
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
    )
    job_id = _run(queue, lambda backend: backend.enqueue(job))
    if as_json:
        print_json({"id": job_id, "queue": queue, "kind": kind})
    else:
        typer.echo(job_id)


@app.command("job")
def job_cmd(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Job id.", show_default=False)],
    queue: QueueName = DEFAULT_QUEUE,
    as_json: JsonFlag = False,
) -> None:
    """One job: its state, attempts, error and result."""
    info = _run(queue, lambda backend: backend.get(job_id))
    if info is None:
        raise NotFound(f"no job {job_id} in queue {queue}")
    if as_json:
        print_json(_job_json(info))
        return
    now = time.time()
    table = _table(f"job {info.id}", ["field", "value"])
    table.add_row("kind", info.kind)
    table.add_row("status", info.status)
    table.add_row("attempts", f"{info.attempts}/{info.max_attempts}")
    table.add_row("created", _ago(info.created_at, now))
    if info.run_at:
        table.add_row("runs at", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.run_at)))
    table.add_row("started", _ago(info.started_at, now))
    table.add_row("finished", _ago(info.finished_at, now))
    table.add_row("payload", json.dumps(info.payload))
    if info.last_error:
        table.add_row("last error", info.last_error)
    if info.result is not None:
        table.add_row("result", json.dumps(info.result))
    _console().print(table)
