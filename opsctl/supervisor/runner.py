"""One supervised run: start the children, answer on the control socket, stop on a signal.

Exit codes: 0 after a clean stop (every child drained within its kill timeout, whether Ctrl-C,
SIGTERM or a platform asked); 130 (SIGINT) or 143 (SIGTERM) when the stop had to kill — a child
outlived its kill timeout, or a second signal escalated; 1 when every process failed; 2 when
every process failed and each on a configuration error (it exited with code 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
import signal
import socket
import sys
from pathlib import Path

from opsctl.errors import ConfigError, OpsctlError
from opsctl.supervisor.control import control_server
from opsctl.supervisor.core import Supervisor
from opsctl.topology import PROGRAM

SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run(supervisor: Supervisor, *, control_path: Path | None = None) -> int:
    """Run ``supervisor`` until a signal (or until every process failed); return the exit code.

    The first SIGINT or SIGTERM stops every child gracefully; a second one kills them at once.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        name = signal.Signals(sig).name
        if not received:
            received.append(sig)
            supervisor.notice(
                f"{name} received: stopping every process (send it again to kill them at once)"
            )
            stop.set()
        else:
            supervisor.notice(f"second {name}: killing every process now")
            supervisor.kill_all()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        serving = (
            control_server(supervisor, control_path)
            if control_path is not None
            else contextlib.nullcontext()
        )
        async with serving:
            await supervisor.start_all()
            failed = await _until_stop_or_failure(supervisor, stop)
            await supervisor.shutdown()
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
    if failed:
        failures = "; ".join(supervisor.failures())
        if supervisor.all_config_errors():
            raise ConfigError(
                f"every process failed on a configuration error, so opsctl up stopped: {failures}",
                hint="fix the configuration, then run opsctl up again",
            )
        raise OpsctlError(f"every process failed, so opsctl up stopped: {failures}")
    if received and supervisor.forced:
        return 128 + received[0]
    return 0


async def _until_stop_or_failure(supervisor: Supervisor, stop: asyncio.Event) -> bool:
    while not stop.is_set():
        supervisor.changed.clear()
        if supervisor.all_failed():
            return True
        waits = [
            asyncio.create_task(supervisor.changed.wait()),
            asyncio.create_task(stop.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
    return False


def check_port(host: str, port: int) -> None:
    """Raise a one-line error when ``host:port`` cannot be bound (in use, or not ours)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web daemon binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OpsctlError(
                    f"port {port} on {host} is already in use, so the web process cannot listen",
                    hint="set PORT to a free port or stop the process using it",
                ) from None
            raise OpsctlError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="check PORT and OPSCTL_HOST",
            ) from None


def default_program() -> str:
    """The installed ``opsctl`` script beside this interpreter, else the one on PATH."""
    sibling = Path(sys.executable).with_name(PROGRAM)
    if sibling.is_file():
        return str(sibling)
    found = shutil.which(PROGRAM)
    if found:
        return found
    raise OpsctlError(
        f"cannot find the {PROGRAM} command to start the daemons with",
        hint="install opsctl into this environment (pip install -e .)",
    )
