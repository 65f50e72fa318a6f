"""``opsctl status`` (the fleet, with or without ``opsctl up``), ``opsctl restart`` and
``opsctl stop`` (which talk to a running ``opsctl up``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opsctl.cli._checks import paint, render_checks
from opsctl.cli._common import JSON_HELP, print_json, settings_from_env
from opsctl.topology import TOPOLOGY

if TYPE_CHECKING:
    from opsctl.queue.base import HeartbeatView
    from opsctl.supervisor.core import ProcessInfo
    from opsctl.verdict import QueueSnapshot

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
Target = Annotated[
    str, typer.Argument(metavar="TYPE[.N]", help="A process type (every instance) or one instance.")
]

# A stop waits for the drain: the longest kill timeout, plus time to answer.
_ACTION_TIMEOUT_S = max(p.kill_timeout_s for p in TOPOLOGY) + 15


def status_cmd(as_json: JsonFlag = False) -> None:
    """Show the fleet: supervised processes, every heartbeat, the queue and its verdict.

    Under `opsctl up`, its processes first (state, pid, uptime, restarts, CPU, memory). Under
    PM2, systemd or a platform there is no supervisor: the fleet is read from the heartbeats and
    the queue alone (workers on other machines too). The verdict is the heartbeat's own: exit 1
    when it fails (or a supervised process is `failed`), 0 when it passes or warns.
    """
    from opsctl.errors import ConfigError
    from opsctl.gate.reader import read_queue_once
    from opsctl.supervisor.control import SupervisorNotRunning, socket_path, status
    from opsctl.verdict import checks_json, queue_checks, worst

    settings = settings_from_env()
    path = socket_path(settings.data_dir)
    snapshot = read_queue_once(settings)
    results = queue_checks(
        snapshot, drain_threshold_s=settings.drain_threshold_s, production=settings.is_production
    )
    verdict = worst(r.status for r in results)
    about: dict[str, Any] | None = None
    infos: list[ProcessInfo] = []
    # No supervisor is no error: PM2, systemd and platforms supervise without one. A data
    # directory too long for a socket (ConfigError) cannot have one either.
    with contextlib.suppress(SupervisorNotRunning, ConfigError):
        about, infos = status(path)
    failed = [info.name for info in infos if info.state == "failed"]
    if as_json:
        print_json(
            {
                "supervisor": about,
                "socket": str(path),
                "processes": [info.to_json() for info in infos],
                **_fleet_json(snapshot),
                "status": verdict,
                "checks": checks_json(results),
            }
        )
    else:
        if about is None:
            typer.echo(
                f"no `opsctl up` supervisor runs for data directory {settings.data_dir}:"
                " the fleet from its heartbeats and the queue\n"
            )
        else:
            _print_supervised(about, infos)
        _print_fleet(snapshot)
        typer.echo("")
        render_checks(results)
        if failed:
            typer.echo(f"supervised process(es) failed: {', '.join(failed)} (opsctl restart NAME)")
        sys.stdout.write(f"fleet: {paint(verdict, sys.stdout)}\n")
    if verdict == "fail" or failed:
        raise typer.Exit(1)


def _print_supervised(about: dict[str, Any], infos: list[ProcessInfo]) -> None:
    rows = [
        [
            info.name,
            info.state,
            str(info.pid) if info.pid else "-",
            age_text(info.uptime_s),
            str(info.restarts),
            f"{info.cpu_percent:.1f}%" if info.cpu_percent is not None else "-",
            _size(info.memory_bytes),
            info.reason or (f"last exit {info.exit_code}" if info.exit_code is not None else ""),
        ]
        for info in infos
    ]
    print_table(["PROCESS", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "MEMORY", "NOTE"], rows)
    typer.echo(
        f"\nsupervisor pid {about['pid']}, up {age_text(about.get('uptime_s'))},"
        f" control socket {about['socket']}\n"
    )


def _fleet_json(snapshot: QueueSnapshot) -> dict[str, Any]:
    stats = snapshot.stats
    return {
        "queue": None
        if stats is None
        else {
            "backend": stats.backend,
            "waiting": stats.waiting,
            "delayed": stats.delayed,
            "active": stats.active,
            "failed": stats.failed,
            "oldestWaitingAgeSeconds": round(stats.oldest_waiting_age_s, 3),
            "completedLastMinute": stats.completed_last_minute,
            "delayedDue": stats.delayed_due,
            "oldestDueAgeSeconds": round(stats.oldest_due_age_s, 3),
        },
        "queueError": snapshot.error,
        "heartbeats": [heartbeat_json(v) for v in _sorted(snapshot)],
    }


def heartbeat_json(view: HeartbeatView) -> dict[str, Any]:
    """One process's heartbeat as ``status --json`` and ``workers list --json`` show it."""
    beat = view.heartbeat
    return {
        "id": beat.id,
        "role": beat.role,
        "live": view.live,
        "lastSeenSecondsAgo": round(view.age_s, 1),
        "lastSeenAt": view.last_seen,
        "startedAt": beat.started_at,
        "inFlight": beat.in_flight,
        "processed": beat.processed,
        "version": beat.version,
    }


def print_heartbeats(views: Sequence[HeartbeatView], *, id_header: str = "HEARTBEAT") -> None:
    """The heartbeats as a table, in the order given."""
    rows = [
        [
            v.heartbeat.id,
            v.heartbeat.role,
            "live" if v.live else "stale",
            age_text(v.age_s) + " ago",
            str(v.heartbeat.in_flight),
            str(v.heartbeat.processed),
            v.heartbeat.version,
        ]
        for v in views
    ]
    headers = [id_header, "ROLE", "STATE", "LAST SEEN", "IN FLIGHT", "PROCESSED", "VERSION"]
    print_table(headers, rows)


def _sorted(snapshot: QueueSnapshot) -> list[HeartbeatView]:
    return sorted(snapshot.processes, key=lambda v: (v.heartbeat.role, v.heartbeat.id))


def _print_fleet(snapshot: QueueSnapshot) -> None:
    """The queue's counts and every heartbeat, for people."""
    stats = snapshot.stats
    if stats is None:
        typer.echo(f"queue ({snapshot.backend}): unavailable: {snapshot.error}")
        return
    due = f", {stats.delayed_due} of them due" if stats.delayed_due else ""
    typer.echo(
        f"queue ({stats.backend}): {stats.waiting} waiting, {stats.delayed} delayed{due},"
        f" {stats.active} active, {stats.failed} dead; oldest waiting"
        f" {stats.oldest_waiting_age_s:.1f}s; {stats.completed_last_minute} done in the last minute"
    )
    if not snapshot.processes:
        typer.echo("heartbeats: none (no opsctl process is running against this queue)")
        return
    typer.echo("")
    print_heartbeats(_sorted(snapshot))


def restart_cmd(target: Target, as_json: JsonFlag = False) -> None:
    """Restart every instance of TYPE, or one instance TYPE.N (a failed one gets a new chance)."""
    _act("restart", target, as_json)


def stop_cmd(target: Target, as_json: JsonFlag = False) -> None:
    """Stop TYPE or TYPE.N (drained, killed at its kill timeout); `opsctl restart` starts it."""
    _act("stop", target, as_json)


def _act(op: str, target: str, as_json: bool) -> None:
    from opsctl.supervisor.control import request, socket_path

    settings = settings_from_env()
    answer = request(
        socket_path(settings.data_dir), {"op": op, "target": target}, timeout=_ACTION_TIMEOUT_S
    )
    processes: list[dict[str, Any]] = answer["processes"]
    if as_json:
        print_json({"processes": processes})
        return
    for proc in processes:
        pid = f" (pid {proc['pid']})" if proc.get("pid") else ""
        typer.echo(f"{proc['name']}: {proc['state']}{pid}")


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Left-aligned columns under their headers, two spaces apart."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def age_text(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``, ``4d03h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
