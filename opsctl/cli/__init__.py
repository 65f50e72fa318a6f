"""The ``opsctl`` command. ``main`` answers ``--version``, ``--help`` and ``deploy-gate`` before
importing Typer."""

from __future__ import annotations

import sys
from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        from opsctl import __version__

        print(f"opsctl {__version__}")
        raise SystemExit(0)
    if args in (["--help"], ["-h"]):
        from opsctl.cli._help import root_help

        sys.stdout.write(root_help())
        raise SystemExit(0)

    from opsctl.entry import run_entry

    if args and args[0] == "deploy-gate":
        from opsctl.cli import _gate_run

        parsed = _gate_run.parse(args[1:])
        if parsed is not None:  # the usual call, answered without importing Typer
            run_entry(lambda: _gate_run.execute(parsed))
        from opsctl.cli.gate import standalone

        run_entry(lambda: standalone(args[1:]))

    from opsctl.cli.app import app

    def body() -> int:
        # Click handles its own usage errors (exit 2); an OpsctlError escapes to run_entry.
        app(args=args, prog_name="opsctl")
        return 0

    run_entry(body)
