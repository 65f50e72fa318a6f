"""``opsctl run CONNECTOR.OPERATION``: queue an execution; with ``--wait``, print its records.

The refusals are the API's, made here from the settings, the definitions and the registry:
an unknown connector or operation, a connector that is not ``stable`` where only stable ones
run, input or config that breaks its schema (every problem listed); each exits 2 before
anything is queued. A worker runs the execution; ``--wait`` follows it, with progress on
stderr, and prints the records on stdout as JSON lines (the whole execution with ``--json``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opsctl.cli._common import JSON_HELP, print_json, settings_from_env
from opsctl.errors import EXIT_FAILED, UsageError

if TYPE_CHECKING:
    from opsctl.connectors.executions import ExecutionRequest
    from opsctl.queue import QueueBackend
    from opsctl.settings import Settings

EPILOG = (
    "Exit codes: 0 queued (or, with --wait, succeeded), 1 the execution failed or --timeout "
    "passed first, 2 usage error or refusal (unknown connector or operation, a connector that "
    "is not stable where only stable ones run, input breaking its schema)."
)
POLL_MIN_S = 0.05
POLL_MAX_S = 0.5


def _target(text: str) -> tuple[str, str]:
    connector, dot, operation = text.partition(".")
    if not dot or not connector or not operation:
        raise UsageError(
            f"{text!r} does not name an operation",
            hint="write CONNECTOR.OPERATION, e.g. github.list_repositories",
        )
    return connector, operation


def _object(text: str | None, option: str) -> dict[str, Any]:
    """A JSON object given as text, ``@FILE`` or ``-`` (standard input)."""
    if text is None:
        return {}
    source = text
    try:
        if text == "-":
            source = sys.stdin.read()
        elif text.startswith("@"):
            source = Path(text[1:]).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(source)
    except ValueError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object, e.g. '{{\"id\": 42}}'")
    return value


def run_cmd(
    target: Annotated[
        str,
        typer.Argument(
            metavar="CONNECTOR.OPERATION",
            help="The operation to run, e.g. github.list_repositories.",
            show_default=False,
        ),
    ],
    input_json: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="The operation's input: a JSON object, @FILE, or - for standard input.",
            show_default=False,
        ),
    ] = None,
    connection: Annotated[
        str | None,
        typer.Option(
            "--connection", "-c", help="Connection id (OAuth connectors).", show_default=False
        ),
    ] = None,
    config_json: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="Connection config over the stored one, as a JSON object.",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the result and print its records.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait, give up after this many seconds.", min=0.1)
    ] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Queue an execution of a connector operation; with --wait, print its records."""
    import asyncio

    from opsctl.connectors.executions import ExecutionRequest

    connector, operation = _target(target)
    request = ExecutionRequest(
        connector,
        operation,
        _object(input_json, "--input"),
        connection,
        _object(config_json, "--config"),
    )
    settings = settings_from_env()
    view = asyncio.run(_run(settings, request, wait=wait, wait_s=timeout, quiet=as_json))
    if not wait:
        if as_json:
            print_json({"id": view["id"], "status": "queued"})
        else:
            typer.echo(view["id"])
        return
    if as_json:
        print_json(view)
    else:
        _print_records(view)
    if view["status"] != "succeeded":
        raise typer.Exit(EXIT_FAILED)


async def _run(
    settings: Settings, request: ExecutionRequest, *, wait: bool, wait_s: float, quiet: bool
) -> dict[str, Any]:
    from opsctl.connectors.executions import (
        Admission,
        CatalogCache,
        enqueue_execution,
    )
    from opsctl.connectors.registry import ConnectorRegistry
    from opsctl.queue import open_queue
    from opsctl.store import migrate, open_store

    async with open_store(settings) as store:
        await migrate(store)
        admission = Admission(settings, CatalogCache(settings), registry=ConnectorRegistry(store))
        await admission.admit(request)  # ExecutionRefused: exit 2 with the reason
    async with open_queue(settings) as queue:
        execution_id = await enqueue_execution(queue, request)
        if not wait:
            return {"id": execution_id}
        return await _follow(queue, execution_id, wait_s, quiet)


def _say(text: str) -> None:
    sys.stderr.write(f"opsctl run: {text}\n")
    sys.stderr.flush()


async def _follow(
    queue: QueueBackend, execution_id: str, wait_s: float, quiet: bool
) -> dict[str, Any]:
    """Poll the execution until it ends or ``wait_s`` pass; progress on stderr."""
    import asyncio

    from opsctl.connectors.executions import TERMINAL, execution_view
    from opsctl.constants import HEARTBEAT_TTL_S

    say = (lambda text: None) if quiet else _say
    say(f"queued execution {execution_id}")
    beats = await queue.heartbeats(ttl_s=HEARTBEAT_TTL_S)
    if not any(b.live and b.heartbeat.role == "worker" for b in beats):
        say("no worker is running: it waits until one starts (opsctl up, or opsctl daemon worker)")
    deadline = time.monotonic() + wait_s
    shown = ""
    pause = POLL_MIN_S
    while True:
        info = await queue.get(execution_id)
        if info is None:
            raise UsageError(f"execution {execution_id} disappeared from the queue")
        view = execution_view(info)
        status = view["status"]
        line = status
        if status == "running":
            line = f"running (attempt {view['attempts']})"
        elif status == "scheduled":
            run_at = view["timings"]["runAt"]
            left = f" in {max(0.0, run_at - time.time()):.1f} s" if run_at else ""
            line = f"scheduled to run again{left}: {view['lastError']}"
        if line != shown:
            if status not in TERMINAL:
                say(line)
            shown = line
        if status in TERMINAL:
            return view
        if time.monotonic() >= deadline:
            say(
                f"still {status} after {wait_s:g} s; it goes on: "
                f"opsctl queue job {execution_id}, or GET /api/executions/{execution_id}"
            )
            return view
        await asyncio.sleep(pause)
        pause = min(POLL_MAX_S, pause * 1.5)


def _print_records(view: dict[str, Any]) -> None:
    result = view.get("result") or {}
    if view["status"] == "succeeded":
        for record in result.get("records", []):
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        timings = result.get("timings") or {}
        more = " (stopped at the page cap; there are more)" if result.get("truncated") else ""
        _say(
            f"succeeded: {result.get('recordCount', 0)} record(s) from {result.get('pages', 0)} "
            f"page(s), {timings.get('requests', 0)} request(s) in "
            f"{timings.get('totalMs', 0):.0f} ms{more}"
        )
        return
    if view["status"] == "failed":
        _say(f"failed: {view.get('error') or 'no reason recorded'}")
        for problem in result.get("problems", []):
            _say(f"  {problem['pointer'] or '(root)'}: {problem['message']}")
