"""README.md, top to bottom, in one terminal: `./scripts/run.sh`, then the tour against it.

The reader has a checkout and nothing configured: the stack is the embedded SQLite one that
`./scripts/run.sh` starts (on a free ``PORT``, which stands in for 8080 in the blocks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._support import free_port
from tests.docs._blocks import REPO, shell_blocks
from tests.docs._shell import base_env, port_and_etc, terminal

pytestmark = pytest.mark.slow

BLOCKS = shell_blocks(REPO / "README.md")


def test_the_readme_runs_top_to_bottom(scratch: Path) -> None:
    port = free_port()
    env = base_env({"PORT": str(port)}, venv_first=False)  # the tour activates .venv itself
    app = scratch / "app"
    with terminal(env, app, port_and_etc(port, app), scratch / "harness") as term:
        for block in BLOCKS:
            if block.skip_reason is None:
                term.run(block)
        term.stop_background()
    assert term.ran, "README.md has no shell block that runs"
    assert any(b.background for b in BLOCKS), "the README no longer starts a stack"
