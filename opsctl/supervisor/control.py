"""The supervisor's control endpoint: JSON lines on a Unix socket in the data directory.

A client sends one JSON object on one line and reads one back::

    {"op": "status"}                          → {"ok": true, "supervisor": {…}, "processes": […]}
    {"op": "restart", "target": "worker.2"}   → {"ok": true, "processes": […]}
    {"op": "stop" | "start", "target": "web"} → {"ok": true, "processes": […]}
    {"op": "events"}                          → one event object per line until the client leaves

An error answers ``{"ok": false, "error": SENTENCE, "exit_code": N}``. The socket is readable by
its owner only: whoever can use it can stop the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from opsctl.constants import SUPERVISOR_SOCKET
from opsctl.errors import EXIT_USAGE, ConfigError, OpsctlError
from opsctl.supervisor.core import ProcessInfo, Supervisor
from opsctl.supervisor.events import Event, event_from_json, event_to_json

_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, one for the terminating NUL
_REQUEST_TIMEOUT_S = 5.0
_EVENT_BACKLOG = 10_000  # events a slow subscriber may fall behind by before it is dropped


class SupervisorNotRunning(OpsctlError):
    """No ``opsctl up`` answers on the control socket of this data directory."""


def socket_path(data_dir: Path) -> Path:
    return data_dir / SUPERVISOR_SOCKET


def _check_length(path: Path) -> None:
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise ConfigError(
            f"the control socket path {path} is longer than the {_MAX_SOCKET_PATH} bytes a Unix"
            " socket allows",
            hint="set OPSCTL_DATA_DIR to a shorter path",
        )


def claim(path: Path) -> None:
    """Remove a stale socket left by a supervisor that died; refuse if one still answers."""
    _check_length(path)
    if not path.exists() and not path.is_symlink():
        return
    try:
        answer = request(path, {"op": "status"}, timeout=2.0)
    except SupervisorNotRunning:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise OpsctlError(
                f"cannot remove the stale control socket {path}: {exc.strerror or exc}"
            ) from None
        return
    except OpsctlError:
        answer = {}
    pid = (answer.get("supervisor") or {}).get("pid", "unknown")
    raise OpsctlError(
        f"another opsctl up (pid {pid}) is already running with data directory {path.parent}",
        hint="stop it first, or set OPSCTL_DATA_DIR to another directory",
    )


@contextlib.asynccontextmanager
async def control_server(supervisor: Supervisor, path: Path) -> AsyncIterator[None]:
    """Serve the control endpoint on ``path`` for the block's duration, then remove it."""
    claim(path)
    started_at = time.time()
    about = {"pid": os.getpid(), "socket": str(path), "started_at": started_at}
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        try:
            await _serve_one(supervisor, about, reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                handlers.discard(task)
            writer.close()

    old_umask = os.umask(0o077)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.umask(0o177)
        server = await asyncio.start_unix_server(handle, path=str(path))
    except OSError as exc:
        raise OpsctlError(
            f"cannot open the control socket {path}: {exc.strerror or exc}",
            hint="check that OPSCTL_DATA_DIR is a writable directory",
        ) from None
    finally:
        os.umask(old_umask)
    try:
        yield
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink at exit, never slow


async def _serve_one(
    supervisor: Supervisor,
    about: dict[str, Any],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    line = await asyncio.wait_for(reader.readline(), _REQUEST_TIMEOUT_S)
    try:
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("a request is a JSON object")
        op = str(message.get("op", ""))
        if op == "events":
            await _stream_events(supervisor, writer)
            return
        answer = await _dispatch(supervisor, about, op, message)
    except ValueError as exc:
        answer = {"ok": False, "error": f"bad request: {exc}", "exit_code": EXIT_USAGE}
    except OpsctlError as exc:
        answer = {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
    writer.write(json.dumps(answer).encode() + b"\n")
    await writer.drain()


async def _dispatch(
    supervisor: Supervisor, about: dict[str, Any], op: str, message: dict[str, Any]
) -> dict[str, Any]:
    if op == "status":
        return {
            "ok": True,
            "supervisor": {**about, "uptime_s": round(time.time() - about["started_at"], 3)},
            "processes": [info.to_json() for info in supervisor.snapshot()],
        }
    actions = {"start": supervisor.start, "stop": supervisor.stop, "restart": supervisor.restart}
    if op not in actions:
        raise ValueError(f"unknown op {op!r} (status, start, stop, restart, events)")
    target = message.get("target")
    if not isinstance(target, str) or not target:
        raise ValueError(f"{op} needs a target such as 'worker' or 'worker.2'")
    if supervisor.stopping:
        raise OpsctlError("the supervisor is shutting down")
    infos = await actions[op](target)
    return {"ok": True, "processes": [info.to_json() for info in infos]}


async def _stream_events(supervisor: Supervisor, writer: asyncio.StreamWriter) -> None:
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def sink(event: Event) -> None:
        if queue.qsize() < _EVENT_BACKLOG:
            queue.put_nowait(event)
        else:  # too slow a reader: end its stream rather than buffer without bound
            unsubscribe()
            queue.put_nowait(None)

    unsubscribe = supervisor.subscribe(sink)
    try:
        writer.write(b'{"ok": true}\n')
        while (event := await queue.get()) is not None:
            writer.write(json.dumps(event_to_json(event)).encode() + b"\n")
            await writer.drain()
    finally:
        unsubscribe()


# ---------------------------------------------------------------------------------- client
def _connect(path: Path, timeout: float) -> socket.socket:
    _check_length(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        sock.close()
        raise SupervisorNotRunning(
            f"no supervisor is running for data directory {path.parent}",
            hint="start one with `opsctl up`",
        ) from None
    except OSError as exc:
        sock.close()
        raise OpsctlError(f"cannot reach the supervisor at {path}: {exc.strerror or exc}") from None
    return sock


def request(path: Path, message: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the supervisor on ``path`` and return its answer.

    Raises :class:`SupervisorNotRunning` when nothing listens there, and an
    :class:`OpsctlError` with the supervisor's sentence and exit code when it refuses.
    """
    with _connect(path, timeout) as sock:
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            with sock.makefile("rb") as stream:
                line = stream.readline()
        except TimeoutError:
            raise OpsctlError(f"the supervisor did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise OpsctlError(f"lost the supervisor at {path}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(line)
    except ValueError:
        raise OpsctlError(f"the supervisor at {path} sent an unreadable answer") from None
    if not isinstance(answer, dict):
        raise OpsctlError(f"the supervisor at {path} sent an unreadable answer")
    if not answer.get("ok"):
        raise OpsctlError(
            str(answer.get("error", "the supervisor refused")),
            exit_code=int(answer.get("exit_code", 1)),
        )
    return answer


def status(path: Path, *, timeout: float = 10.0) -> tuple[dict[str, Any], list[ProcessInfo]]:
    """The supervisor's own details and a snapshot of every process it runs."""
    answer = request(path, {"op": "status"}, timeout=timeout)
    return answer["supervisor"], [ProcessInfo.from_json(p) for p in answer["processes"]]


def events(path: Path) -> Iterator[Event]:
    """Every event from now on, until the supervisor stops (blocking; for a worker thread)."""
    with _connect(path, 10.0) as sock:
        sock.sendall(b'{"op": "events"}\n')
        sock.settimeout(None)
        with sock.makefile("rb") as stream:
            stream.readline()  # the acknowledgement
            for line in stream:
                yield event_from_json(json.loads(line))
