"""Entry-point plumbing shared by the CLI and the daemons: one line for an error, never a trace."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from opsctl.errors import EXIT_FAILED, OpsctlError


def fail(error: OpsctlError, *, program: str = "opsctl") -> NoReturn:
    """Print the error's sentence on stderr and exit with its code."""
    print(f"{program}: error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)


def run_entry(body: Callable[[], int | None], *, program: str = "opsctl") -> NoReturn:
    """Run ``body``; turn an :class:`OpsctlError` into one line and its exit code.

    Ctrl-C at a prompt or in a foreground command exits 130 without a traceback; so does an
    output that cannot be written (exit 1), see :func:`output_lost`.
    """
    try:
        try:
            code = body()
        finally:  # however it ended (Click ends with SystemExit): a full disk or a closed
            sys.stdout.flush()  # pipe is reported here, not in the interpreter's teardown
    except OpsctlError as exc:
        fail(exc, program=program)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as exc:  # no lower layer turned it into a sentence: its own, on one line
        if isinstance(exc, BrokenPipeError) or not _stdout_works():
            output_lost(exc, program=program)
        where = f": {exc.filename}" if exc.filename else ""
        fail(OpsctlError(f"{exc.strerror or exc}{where}"), program=program)
    raise SystemExit(code or 0)


def output_lost(exc: OSError, *, program: str = "opsctl") -> NoReturn:
    """Exit 1 because stdout cannot take the output (a closed pipe, a full disk).

    Says why on stderr, except for a pipe its reader closed (``opsctl … | head``), and points
    stdout at /dev/null so the interpreter's last flush does not fail a second time.
    """
    _silence_stdout()
    if not isinstance(exc, BrokenPipeError):
        why = exc.strerror or str(exc)
        print(f"{program}: error: cannot write the output: {why}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_FAILED) from None


def _stdout_works() -> bool:
    """Flush stdout; False when it cannot take more."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return False
    return True


def _silence_stdout() -> None:
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
