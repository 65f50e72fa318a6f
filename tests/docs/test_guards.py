"""Every documented guard fails closed under `sh`, and every other document runs top to bottom.

Two fleets on the machine's Redis (a key prefix each) and embedded SQLite databases:

- **failing**: a web daemon and no worker, so the heartbeat answers 503 (``workers: fail``);
- **healthy**: a web daemon and a worker, so the heartbeat passes and a canary completes.

Each guard block (see tests/docs/_blocks.py) is run literally by plain ``sh``, as a pipeline
step runs it: against the failing fleet it must exit non-zero (and not because the shell could
not run it), against the healthy one it must exit 0. The documents other than README.md and
docs/deployment.md (which have their own tests) run top to bottom against the healthy fleet.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._support import REDIS_URL, Daemon, delete_redis_prefix, free_port
from tests.docs._blocks import REPO, Block, all_shell_blocks, documents, shell_blocks
from tests.docs._shell import base_env, port_and_etc, run_literal, terminal, wait_heartbeat

pytestmark = pytest.mark.slow

GUARDS = [b for b in all_shell_blocks() if b.is_guard]
OWN_TESTS = {"README.md", "docs/deployment.md"}  # test_readme.py, test_deployment_guide.py
OTHER_DOCUMENTS = [
    p for p in documents() if p.relative_to(REPO).as_posix() not in OWN_TESTS and shell_blocks(p)
]
NOT_RUN = {126, 127}  # the shell could not run the command: not a verdict


@dataclass
class Fleet:
    env: dict[str, str]
    app: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def _fleet(root: Path, name: str, roles: tuple[str, ...]) -> Iterator[Fleet]:
    app = root / "app"
    port = free_port()
    prefix = f"opsctl-docs-{name}-{uuid.uuid4().hex[:10]}"
    env = base_env(
        {
            "APP_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "OPSCTL_DATA_DIR": str(root / f"data-{name}"),
            "QUEUE_REDIS_URL": REDIS_URL,
            "OPSCTL_REDIS_PREFIX": prefix,
            "OPSCTL_API_TOKEN": secrets.token_hex(16),
        }
    )
    daemons = [
        Daemon(["daemon", role], env, app, root / "harness" / f"{name}-{role}.log")
        for role in roles
    ]
    try:
        daemons[0].wait_http(f"http://127.0.0.1:{port}/api/health/live", timeout=60)
        yield Fleet(env, app, port)
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        delete_redis_prefix(prefix)


@pytest.fixture(scope="module")
def failing(scratch: Path) -> Iterator[Fleet]:
    with _fleet(scratch, "failing", ("web",)) as fleet:
        wait_heartbeat(fleet.url, "fail")
        yield fleet


@pytest.fixture(scope="module")
def healthy(scratch: Path) -> Iterator[Fleet]:
    my_connectors = scratch / "app" / "my-connectors"  # a reader's own definitions folder
    my_connectors.mkdir(exist_ok=True)
    shutil.copy(REPO / "tests" / "connectors" / "valid" / "acme.json", my_connectors)
    with _fleet(scratch, "healthy", ("web", "worker")) as fleet:
        wait_heartbeat(fleet.url, "pass")
        yield fleet


def _run(block_id: str, fleet: Fleet, *, failing: bool) -> subprocess.CompletedProcess[str]:
    [block] = [b for b in GUARDS if b.id == block_id]
    return run_literal(
        block,
        env=fleet.env,
        cwd=fleet.app,
        subs=port_and_etc(fleet.port, fleet.app),
        failing=failing,
    )


def _shown(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def test_the_docs_have_guards_in_every_form() -> None:
    scripts = [b.script for b in GUARDS]
    assert any("deploy-gate" in s for s in scripts)
    assert any("check queue" in s for s in scripts)
    assert any("curl" in s for s in scripts)


@pytest.mark.parametrize("block_id", [b.id for b in GUARDS])
def test_a_guard_fails_closed_on_a_503(block_id: str, failing: Fleet) -> None:
    result = _run(block_id, failing, failing=True)
    assert result.returncode != 0, f"{block_id} passed a failing fleet under sh:\n{_shown(result)}"
    assert result.returncode not in NOT_RUN, f"{block_id} did not run:\n{_shown(result)}"


@pytest.mark.parametrize("block_id", [b.id for b in GUARDS])
def test_a_guard_passes_a_healthy_fleet(block_id: str, healthy: Fleet) -> None:
    result = _run(block_id, healthy, failing=False)
    assert result.returncode == 0, f"{block_id} failed a healthy fleet:\n{_shown(result)}"


def test_the_pipe_the_docs_gave_up_fails_open_here(failing: Fleet) -> None:
    """Why the guards read as they do, and proof that the test above would catch the old one:
    with this machine's sh and jq, ``curl -fsS … | jq -e …`` passes a 503."""
    empty = subprocess.run(["jq", "-e", "."], input="", capture_output=True, check=False)
    if empty.returncode != 0:
        pytest.skip("this machine's jq fails on empty input: the pipe cannot fail open here")
    old = Block(
        "(the old curl guard)",
        0,
        "sh",
        'curl -fsS "$APP_URL/api/production/queue/heartbeat"'
        " | jq -e '.status.status == \"pass\"'\n",
    )
    result = run_literal(old, env=failing.env, cwd=failing.app, subs=[])
    assert result.returncode == 0, _shown(result)
    assert "503" in result.stderr


@pytest.mark.parametrize("document", [p.relative_to(REPO).as_posix() for p in OTHER_DOCUMENTS])
def test_a_document_runs_top_to_bottom(document: str, healthy: Fleet, scratch: Path) -> None:
    blocks = shell_blocks(REPO / document)
    workdir = scratch / "harness" / document.replace("/", "_")
    workdir.mkdir()
    with terminal(
        healthy.env, healthy.app, port_and_etc(healthy.port, healthy.app), workdir
    ) as term:
        for block in blocks:
            if block.skip_reason is None:
                term.run(block)
        term.stop_background()
    assert term.ran or all(b.skip_reason for b in blocks)
