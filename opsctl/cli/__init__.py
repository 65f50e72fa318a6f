"""The ``opsctl`` command: the Typer application of :mod:`opsctl.cli.app`, run by ``main``."""

from __future__ import annotations

import sys
from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    """Run ``opsctl`` with ``argv`` (default: the process's arguments) and exit.

    Click answers its own usage errors (exit 2); an :class:`~opsctl.errors.OpsctlError`
    escapes to :func:`~opsctl.entry.run_entry`, which prints its sentence and exit code.
    """
    from opsctl.cli.app import app
    from opsctl.entry import run_entry

    args = sys.argv[1:] if argv is None else argv

    def body() -> int:
        app(args=args, prog_name="opsctl")
        return 0

    run_entry(body)
