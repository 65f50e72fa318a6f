"""Running documented shell blocks as a reader would: ``/bin/sh``, a terminal per document.

What the harness changes in a block before it runs, and nothing else:

- **the port**: ``localhost:8080`` and ``127.0.0.1:8080`` (the default a reader's stack listens
  on) become ``127.0.0.1:$PORT`` of the test's stack, which listens on a free port because
  tests run side by side;
- **/etc/opsctl/**: the host directory of the production environment file becomes a directory
  of the test's scratch copy (the tests never write to /etc);
- against a **failing** fleet only, ``opsctl deploy-gate`` runs with ``--timeout 1``: a
  failing fleet fails for the whole timeout by construction, and waiting 120 s to see exit 1
  proves nothing more than one round does (the gate's retries are tested in tests/gate).

Blocks of one document (of one ``##`` section, for docs/deployment.md) run in order in a
:class:`Terminal`: each is a fresh ``sh -ex`` (so a failing command fails the block), started
with the environment and working directory the block before it left, as if typed into one
terminal. A guard is also run literally, by plain ``sh`` (no ``-e``): it must fail closed on
its own (:func:`run_literal`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import psutil

from opsctl.constants import HEARTBEAT_PATH
from tests._support import clean_env
from tests.docs._blocks import REPO, Block
from tests.topology.conftest import kill_marked, processes_with_env

SH = "/bin/sh"
MARK = "DOCS_TEST_RUN"  # every process a terminal starts carries it: leftovers are found by it
BLOCK_TIMEOUT_S = 90.0
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0

Substitutions = Sequence[tuple[str, str]]


def port_and_etc(port: int | str, scratch: Path) -> list[tuple[str, str]]:
    """The two substitutions every document gets (see the module docstring)."""
    return [
        (r"\b(?:localhost|127\.0\.0\.1):8080\b", f"127.0.0.1:{port}"),
        (r"/etc/opsctl/", f"{scratch}/etc/opsctl/"),
    ]


def short_gate(script: str) -> str:
    """``opsctl deploy-gate`` with ``--timeout 1`` whatever the block says (failing fleet only)."""
    if "deploy-gate" not in script:
        return script
    script = re.sub(r"[ \t]+--timeout[ =][0-9.]+", "", script)
    return re.sub(r"\bdeploy-gate\b", "deploy-gate --timeout 1", script)


def substitute(script: str, subs: Substitutions) -> str:
    for pattern, replacement in subs:
        script = re.sub(pattern, replacement, script)
    return script


def make_scratch(target: Path) -> Path:
    """A reader's checkout: the files the docs use, and a .venv whose opsctl is the one under
    test (the repository's .venv or wherever CI installed it), set up as scripts/setup.sh
    leaves it so that ``./scripts/run.sh`` installs nothing."""
    for name in ("definitions", "scripts"):
        shutil.copytree(REPO / name, target / name)
    for name in ("pyproject.toml", "Procfile", "ecosystem.config.js", "render.yaml", "fly.toml"):
        shutil.copy(REPO / name, target / name)
    real = Path(sys.executable).parent
    bin_dir = target / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for entry in real.iterdir():
        (bin_dir / entry.name).symlink_to(entry)
    if (real.parent / "pyvenv.cfg").exists():
        (target / ".venv" / "pyvenv.cfg").symlink_to(real.parent / "pyvenv.cfg")
    digest = hashlib.sha256((target / "pyproject.toml").read_bytes()).hexdigest()
    (target / ".venv" / ".opsctl-installed").write_text(digest + "\n")
    (target / "etc" / "opsctl").mkdir(parents=True)
    return target


def base_env(extra: Mapping[str, str] | None = None, *, venv_first: bool = True) -> dict[str, str]:
    """A reader's environment: no opsctl configuration but ``extra``; opsctl on the PATH."""
    env = clean_env(extra)
    env.pop("PYTHONUNBUFFERED", None)  # the reader's shell does not have it; the docs say when
    env[MARK] = uuid.uuid4().hex
    if venv_first:
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def heartbeat(url: str, timeout: float = 3) -> tuple[int, object]:
    """The status code and JSON body of the heartbeat at ``url`` (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url + HEARTBEAT_PATH, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else None
    except (OSError, ValueError):
        return 0, None


def wait_heartbeat(url: str, status: str, deadline_s: float = READY_TIMEOUT_S) -> None:
    """Wait until the heartbeat at ``url`` says ``status`` (``pass`` or ``fail``)."""
    deadline = time.monotonic() + deadline_s
    last: tuple[int, object] = (0, None)
    while time.monotonic() < deadline:
        last = heartbeat(url)
        body = last[1]
        if isinstance(body, dict) and body.get("status", {}).get("status") == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"the heartbeat at {url} never said {status}: {last}")


def run_literal(
    block: Block,
    *,
    env: Mapping[str, str],
    cwd: Path,
    subs: Substitutions,
    failing: bool = False,
    timeout: float = BLOCK_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """The block as a reader pastes it into ``sh``: no ``-e``, nothing added."""
    script = substitute(block.script, subs)
    if failing:
        script = short_gate(script)
    return subprocess.run(
        [SH, "-c", script],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Background:
    """One long-running block, started by ``sh``, stopped as Ctrl-C stops it."""

    def __init__(self, block: Block, script: str, env: Mapping[str, str], cwd: Path, log: Path):
        self.block = block
        self.env = {**env, "DOCS_TEST_BACKGROUND": uuid.uuid4().hex}
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [SH, "-c", script],
            env=self.env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last: tuple[int, object] = (0, None)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.block.id}: exited {self.proc.returncode} before its stack was up:\n"
                    f"{self.output}"
                )
            last = heartbeat(url)
            body = last[1]
            if last[0] == 200 and isinstance(body, dict) and body["status"]["status"] == "pass":
                return
            time.sleep(0.2)
        raise AssertionError(
            f"{self.block.id}: no passing heartbeat at {url}: {last}\n{self.output}"
        )

    def stop(self) -> int:
        """Ctrl-C: SIGINT to the command ``sh`` runs (a terminal sends it to the foreground job,
        not to the shell); wait for the shell to finish; return its exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(self.proc.pid).children():
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"{self.block.id}: still running {STOP_TIMEOUT_S:.0f} s after Ctrl-C:\n"
                    f"{self.output}"
                ) from None
        self._log.close()
        return self.proc.returncode

    def leftovers(self) -> list[int]:
        return processes_with_env("DOCS_TEST_BACKGROUND", self.env["DOCS_TEST_BACKGROUND"])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        kill_marked("DOCS_TEST_BACKGROUND", self.env["DOCS_TEST_BACKGROUND"])
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


class Terminal:
    """One reader's terminal for one document: its blocks in order, state carried between them.

    ``workdir`` holds the harness's own files (scripts, state, logs), apart from ``cwd``.
    """

    def __init__(self, env: Mapping[str, str], cwd: Path, subs: Substitutions, workdir: Path):
        self.env = {**env, MARK: uuid.uuid4().hex}  # its own: a fleet it runs against is not its
        self.cwd = cwd
        self.subs = list(subs)
        self.workdir = workdir
        self.background: Background | None = None
        self.ran: list[str] = []
        self.results: dict[str, subprocess.CompletedProcess[str]] = {}  # foreground, by block id
        self._count = 0

    @property
    def url(self) -> str:
        return self.env.get("APP_URL") or f"http://127.0.0.1:{self.env.get('PORT', '8080')}"

    def run(self, block: Block) -> None:
        """Run one block as its marker says; raise AssertionError when it does not do so."""
        assert block.skip_reason is None, f"{block.id} is marked skip"
        if block.background:
            commands = block.lines if block.each_line else [block.script]
            for command in commands:
                self.start(block, command)
                if block.each_line:
                    self.stop_background()
        else:
            self.foreground(block)
        self.ran.append(block.id)

    def foreground(self, block: Block) -> subprocess.CompletedProcess[str]:
        self._count += 1
        state = self.workdir / f"state-{self._count}"
        state.mkdir()
        script = substitute(block.script, self.subs)
        wrapper = (
            f'trap \'pwd > "{state}/pwd"; env -0 > "{state}/env"\' EXIT\n'  # the terminal's state
            + script
        )
        try:
            result = subprocess.run(
                [SH, "-ex", "-c", wrapper],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{block.id}: still running after {BLOCK_TIMEOUT_S:.0f} s (a long-running"
                f" command needs a 'background' marker):\n{script}\n{exc.stdout!r}\n{exc.stderr!r}"
            ) from None
        expected = block.expected_exit
        assert result.returncode == expected, (
            f"{block.id}: exit {result.returncode}, expected {expected}\n--- script\n{script}"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
        if (state / "env").exists():
            pairs = (item.split("=", 1) for item in (state / "env").read_text().split("\0"))
            env = {k: v for k, v in (p for p in pairs if len(p) == 2)}
            for name in ("PWD", "OLDPWD", "SHLVL", "_"):
                env.pop(name, None)
            self.env = env
            self.cwd = Path((state / "pwd").read_text().strip())
        self.results[block.id] = result
        return result

    def start(self, block: Block, command: str) -> None:
        self.stop_background()
        self._count += 1
        script = substitute(command, self.subs)
        log = self.workdir / f"background-{self._count}.log"
        self.background = Background(block, script, self.env, self.cwd, log)
        self.background.wait_ready(self.url)

    def stop_background(self) -> None:
        """Stop the running background block; it must exit 0 and leave no process behind."""
        background, self.background = self.background, None
        if background is None:
            return
        code = background.stop()
        assert code == 0, f"{background.block.id}: exit {code} after Ctrl-C:\n{background.output}"
        deadline = time.monotonic() + 10
        while background.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = background.leftovers()
        background.kill()
        assert not left, f"{background.block.id}: processes left after it stopped: {left}"

    def close(self) -> None:
        """Tear down whatever is left (a failed test's stack), without judging it."""
        if self.background is not None:
            self.background.kill()
            self.background = None
        kill_marked(MARK, self.env[MARK])


@contextlib.contextmanager
def terminal(
    env: Mapping[str, str], cwd: Path, subs: Substitutions, workdir: Path
) -> Iterator[Terminal]:
    term = Terminal(env, cwd, subs, workdir)
    try:
        yield term
    finally:
        term.close()
