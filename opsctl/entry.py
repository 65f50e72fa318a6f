"""Entry-point plumbing shared by the CLI and the daemons: one line for an error, never a trace."""

from __future__ import annotations

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

    Ctrl-C at a prompt or in a foreground command exits 130 without a traceback.
    """
    try:
        code = body()
    except OpsctlError as exc:
        fail(exc, program=program)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # `opsctl … | head` closed our stdout
        raise SystemExit(EXIT_FAILED) from None
    raise SystemExit(code or 0)
