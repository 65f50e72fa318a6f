"""The harness judges blocks as promised: a failing command fails, state carries, guards run raw."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs._blocks import Block
from tests.docs._shell import base_env, port_and_etc, run_literal, short_gate, substitute, terminal


def _block(text: str, directive: str | None = None) -> Block:
    return Block("doc.md", 1, "sh", text, directive)


def test_a_failing_command_fails_its_block(tmp_path: Path) -> None:
    with terminal(base_env(), tmp_path, [], tmp_path) as term:
        with pytest.raises(AssertionError, match=r"doc\.md:1: exit 1, expected 0"):
            term.run(_block("false\necho never\n"))
        term.run(_block("false\n", "exits 1"))
        with pytest.raises(AssertionError, match="exit 0, expected 3"):
            term.run(_block("true\n", "exits 3"))


def test_a_block_starts_where_the_one_before_left_the_terminal(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with terminal(base_env(), tmp_path, [], tmp_path / "sub") as term:
        term.run(_block("export GREETING=hello\ncd sub\n"))
        term.run(_block('test "$GREETING" = hello\ntest "$(basename "$PWD")" = sub\n'))
    assert term.cwd == tmp_path / "sub"


def test_a_background_block_that_exits_early_fails(tmp_path: Path) -> None:
    env = base_env({"PORT": "9"})  # nothing listens there
    with (
        terminal(env, tmp_path, [], tmp_path) as term,
        pytest.raises(AssertionError, match="exited 3 before its stack was up"),
    ):
        term.run(_block("exit 3\n", "background"))


def test_a_guard_runs_raw_without_errexit(tmp_path: Path) -> None:
    result = run_literal(_block("false\ntrue\n"), env=base_env(), cwd=tmp_path, subs=[])
    assert result.returncode == 0  # plain sh: the last command decides, as in a pipeline step


def test_the_substitutions_are_the_documented_ones(tmp_path: Path) -> None:
    subs = port_and_etc(41234, tmp_path)
    text = "curl localhost:8080/x http://127.0.0.1:8080/y :80800 . /etc/opsctl/production.env"
    assert substitute(text, subs) == (
        f"curl 127.0.0.1:41234/x http://127.0.0.1:41234/y :80800 . {tmp_path}/etc/opsctl/"
        "production.env"
    )
    assert short_gate("opsctl deploy-gate --canary --timeout 120 && echo ok") == (
        "opsctl deploy-gate --timeout 1 --canary && echo ok"
    )
    assert short_gate("opsctl check queue") == "opsctl check queue"
