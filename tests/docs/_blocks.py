"""The fenced code blocks of README.md and docs/, and what the docs tests do with each.

Every fenced block must say what it holds (its info string): ```bash, ```sh, ```shell or
```console for commands, which the docs tests run; ```text, ```json, ```yaml, ```toml, ```ini,
```python or ```javascript for anything else. A shell block runs unless a marker on the line
before it (an HTML comment, invisible once rendered) says otherwise:

- ``<!-- docs-test: skip: REASON -->``: it cannot run on a test machine (a cloud account, a
  service manager); the reason is reported as the test's skip reason.
- ``<!-- docs-test: background -->``: it runs a stack in the foreground (``opsctl up``): started
  in the background until the stack's heartbeat passes, left running for the blocks after it,
  then stopped as a reader stops it (Ctrl-C), and it must exit 0.
- ``<!-- docs-test: background, each line -->``: each command line is such a run of its own,
  started, checked and stopped one after another (alternative forms of one command).
- ``<!-- docs-test: exits N -->``: it must exit with status N (a refusal that is the point).

A block that reads the heartbeat or readiness endpoint with curl, or runs ``opsctl
deploy-gate`` or ``opsctl check queue``, is a **guard**: besides its run in its document, it is
run on its own against a fleet that fails and one that passes (tests/docs/test_guards.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
OTHER_LANGUAGES = frozenset(
    {"text", "json", "yaml", "toml", "ini", "python", "javascript", "diff", "http"}
)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->\s*$")
_ANY_MARKER = re.compile(r"<!--\s*docs-test\b")
_EXITS = re.compile(r"exits (?P<code>\d{1,3})")
_GUARD = re.compile(
    r"\bdeploy-gate\b|\bcheck queue\b|curl\b[^\n]*(/api/production/queue/heartbeat|/ready\b)"
)


class ExtractError(Exception):
    """A document whose blocks the docs tests cannot classify: path:line and why."""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and the marker before it."""

    path: str
    line: int
    lang: str
    text: str
    directive: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL_LANGUAGES

    @property
    def skip_reason(self) -> str | None:
        if self.directive is not None and self.directive.startswith("skip:"):
            return self.directive.removeprefix("skip:").strip()
        return None

    @property
    def background(self) -> bool:
        return self.directive in ("background", "background, each line")

    @property
    def each_line(self) -> bool:
        return self.directive == "background, each line"

    @property
    def expected_exit(self) -> int:
        found = _EXITS.fullmatch(self.directive or "")
        return int(found["code"]) if found else 0

    @property
    def script(self) -> str:
        """What a reader types: the block itself, or a console block's ``$`` lines."""
        if self.lang != "console":
            return self.text
        commands, continued = [], False
        for line in self.text.splitlines():
            if continued or line.startswith("$ "):
                commands.append(line if continued else line[2:])
                continued = line.endswith("\\")
        return "\n".join(commands) + "\n"

    @property
    def lines(self) -> list[str]:
        """The script's commands, one per line (a ``\\`` continuation joined), comments dropped."""
        out: list[str] = []
        pending = ""
        for raw in self.script.splitlines():
            if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
                continue
            piece = raw.lstrip() if pending else raw
            if raw.endswith("\\"):
                pending += piece[:-1].rstrip() + " "
                continue
            out.append(pending + piece)
            pending = ""
        return out

    @property
    def is_guard(self) -> bool:
        return self.is_shell and _GUARD.search(self.script) is not None


_DIRECTIVES = ("background", "background, each line")


def _check_directive(path: str, line: int, directive: str) -> None:
    if directive in _DIRECTIVES or _EXITS.fullmatch(directive):
        return
    if directive.startswith("skip:") and directive.removeprefix("skip:").strip():
        return
    raise ExtractError(
        f"{path}:{line}: unknown docs-test marker {directive!r}; use 'skip: REASON',"
        " 'background', 'background, each line' or 'exits N'"
    )


def parse(text: str, path: str) -> list[Block]:
    """Every fenced block of one markdown document, in order; :class:`ExtractError` when a
    block does not say what it holds, a fence is never closed or a marker is misplaced."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # a marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        if marker:
            if pending is not None:
                raise ExtractError(f"{path}:{pending[0]}: a docs-test marker without a block")
            _check_directive(path, i + 1, marker["directive"])
            pending = (i + 1, marker["directive"])
            i += 1
            continue
        if _ANY_MARKER.search(line):
            raise ExtractError(f"{path}:{i + 1}: a docs-test marker must be a line of its own")
        fence = _FENCE.match(line)
        if not fence:
            if line.strip() and pending is not None:
                raise ExtractError(f"{path}:{pending[0]}: a docs-test marker without a block")
            i += 1
            continue
        start, indent, mark = i + 1, fence["indent"], fence["fence"]
        words = fence["info"].split()
        lang = words[0].lower() if words else ""
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = lines[i].strip()
            if closing.startswith(mark[0] * len(mark)) and not closing.strip(mark[0]):
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        else:
            raise ExtractError(f"{path}:{start}: a fenced block that is never closed")
        i += 1
        if not lang:
            raise ExtractError(
                f"{path}:{start}: say what the block holds: ```bash (or sh, shell, console)"
                " for commands the docs tests run, ```text for output and the like"
            )
        if lang not in SHELL_LANGUAGES | OTHER_LANGUAGES:
            raise ExtractError(
                f"{path}:{start}: unknown block language {lang!r}; the docs tests know"
                f" {', '.join(sorted(SHELL_LANGUAGES | OTHER_LANGUAGES))}"
            )
        directive = pending[1] if pending else None
        if directive is not None and lang not in SHELL_LANGUAGES:
            raise ExtractError(f"{path}:{pending[0] if pending else start}: a docs-test marker"
                               f" before a {lang} block, which is never run")  # fmt: skip
        block = Block(path, start, lang, "\n".join(body) + "\n", directive)
        if block.is_guard and (block.skip_reason or block.background):
            raise ExtractError(f"{path}:{start}: a guard must run: no skip or background marker")
        blocks.append(block)
        pending = None
    if pending is not None:
        raise ExtractError(f"{path}:{pending[0]}: a docs-test marker without a block")
    return blocks


def documents(root: Path = REPO) -> list[Path]:
    """README.md and every markdown file under docs/, in a stable order."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def extract(path: Path, root: Path = REPO) -> list[Block]:
    return parse(path.read_text(encoding="utf-8"), path.relative_to(root).as_posix())


def shell_blocks(path: Path, root: Path = REPO) -> list[Block]:
    return [b for b in extract(path, root) if b.is_shell]


def all_shell_blocks(root: Path = REPO) -> list[Block]:
    return [b for path in documents(root) for b in shell_blocks(path, root)]
