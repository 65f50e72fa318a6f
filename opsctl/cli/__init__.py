"""The ``opsctl`` command. ``main`` answers ``--version``, ``--help`` and ``deploy-gate`` before
importing Typer."""

from __future__ import annotations

import sys
from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        from opsctl import __version__

        _say(f"opsctl {__version__}\n")
    if args in (["--help"], ["-h"]):
        from opsctl.cli._help import root_help

        _say(root_help())

    from opsctl.entry import exit_now, run_entry

    if args and args[0] == "deploy-gate":
        from opsctl.cli import _gate_run

        parsed = _gate_run.parse(args[1:])
        if parsed is not None:  # the usual call, answered without importing Typer
            try:
                run_entry(lambda: _gate_run.execute(parsed))
            except SystemExit as done:
                if argv is not None:  # called from Python: the caller's interpreter goes on
                    raise
                exit_now(done.code)
        from opsctl.cli.gate import standalone

        run_entry(lambda: standalone(args[1:]))

    from opsctl.cli.app import app

    def body() -> int:
        # Click handles its own usage errors (exit 2); an OpsctlError escapes to run_entry.
        app(args=args, prog_name="opsctl")
        return 0

    run_entry(body)


def _say(text: str) -> NoReturn:
    """Write ``text`` and exit 0, or exit 1 when stdout cannot take it."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        from opsctl.entry import output_lost

        output_lost(exc)
    raise SystemExit(0)
