"""The root ``opsctl --help`` text, printed without importing Typer so it answers at once.

A test checks that this table lists exactly the commands the Typer app registers, with the
same summaries; when you add a command, add its line here too.
"""

from __future__ import annotations

SUMMARY = "Run, check and operate the connector platform and its daemons."

COMMANDS: tuple[tuple[str, str], ...] = (
    ("up", "Run and supervise the topology: prefixed logs, restarts, a graceful stop on Ctrl-C."),
    ("status", "Show each supervised process: state, pid, uptime, restarts, CPU and memory."),
    (
        "dashboard",
        "Watch and operate the platform live: processes, queue, gate, connectors, limits, logs.",
    ),
    (
        "restart",
        "Restart every instance of TYPE, or one instance TYPE.N (a failed one gets a new chance).",
    ),
    (
        "stop",
        "Stop TYPE or TYPE.N (drained, killed at its kill timeout); `opsctl restart` starts it.",
    ),
    ("daemon", "Run one bundled daemon in the foreground."),
    (
        "deploy-gate",
        "Check the queue, the heartbeat and readiness endpoints, until all pass or time is up.",
    ),
    ("check", "Health checks that need no web daemon."),
    ("queue", "The job queue: stats, jobs, the dead-letter set."),
    ("schedules", "Cron schedules (UTC) that the scheduler daemon turns into jobs."),
    (
        "manifests",
        "Procfile, ecosystem.config.js, render.yaml and fly.toml, from opsctl/topology.py.",
    ),
    ("run", "Queue an execution of a connector operation; with --wait, print its records."),
    ("connectors", "Connector definitions: validate the JSON files that describe vendor APIs."),
    ("rate-limits", "Vendor rate limits derived for a topology, and reverse-proxy lines to paste."),
    ("db", "Database schema: status and migrations."),
    ("keys", "Data keys that encrypt stored credentials: status, rotation, retirement."),
    ("secrets", "Secret providers and references: check they resolve."),
)


def root_help() -> str:
    width = max(len(name) for name, _ in COMMANDS)
    lines = [
        "Usage: opsctl [OPTIONS] COMMAND [ARGS]...",
        "",
        f"  {SUMMARY}",
        "",
        "Options:",
        "  -V, --version  Print the version.",
        "  -h, --help     Show this message and exit.",
        "",
        "Commands:",
        *(f"  {name:<{width}}  {summary}" for name, summary in COMMANDS),
        "",
        "Run 'opsctl COMMAND --help' for the options of a command.",
    ]
    return "\n".join(lines) + "\n"
