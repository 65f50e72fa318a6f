"""The docs tests see every block: the extractor, the markers, and what the documents may say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs._blocks import (
    REPO,
    Block,
    ExtractError,
    all_shell_blocks,
    documents,
    extract,
    parse,
)

DOCS = [p.relative_to(REPO).as_posix() for p in documents()]
SKIPPED = [b for b in all_shell_blocks() if b.skip_reason]


@pytest.mark.parametrize("document", DOCS)
def test_every_block_of_a_document_says_what_it_holds(document: str) -> None:
    blocks = extract(REPO / document)  # raises ExtractError naming path:line
    assert all(b.lang for b in blocks)


@pytest.mark.parametrize("block_id", [b.id for b in SKIPPED])
def test_a_block_marked_skip_says_why(block_id: str) -> None:
    [block] = [b for b in SKIPPED if b.id == block_id]
    assert block.skip_reason
    pytest.skip(f"{block.id} is not run here: {block.skip_reason}")


def test_most_shell_blocks_run() -> None:
    blocks = all_shell_blocks()
    assert len(blocks) >= 20
    assert len(SKIPPED) * 3 < len(blocks), [b.id for b in SKIPPED]


def test_no_document_refers_to_design_notes_outside_the_repository() -> None:
    pattern = re.compile(r"DESIGN\.md|STYLE\.md|design notes|\.\./shared|/work/shared")
    found = [
        f"{doc}:{n}: {line.strip()}"
        for doc in DOCS
        for n, line in enumerate((REPO / doc).read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)


def test_no_block_pipes_into_jq_e() -> None:
    # In sh (no pipefail) the pipe's status is jq's, and jq 1.6 exits 0 on empty input.
    found = [
        b.id
        for b in all_shell_blocks()
        if re.search(r"\|\s*jq\s+(-\w*e\b|--exit-status)", b.script)
    ]
    assert not found, f"fail-open guards: {found}"


def test_the_deploy_gate_is_the_guard_the_docs_prefer() -> None:
    monitoring = (REPO / "docs" / "operations" / "monitoring.md").read_text()
    assert "## The guard to prefer: `opsctl deploy-gate`" in monitoring
    assert monitoring.index("opsctl deploy-gate --timeout") < monitoring.index("## The curl guard")
    deployment = " ".join((REPO / "docs" / "deployment.md").read_text().split())
    assert "It is the guard to prefer" in deployment


# The extractor itself, on small documents.


def _one(text: str) -> Block:
    [block] = parse(text, "doc.md")
    return block


def test_a_shell_block_is_found_with_its_line_and_marker() -> None:
    text = "# Title\n\n<!-- docs-test: skip: needs a cloud -->\n```bash\nheroku ps\n```\n"
    block = _one(text)
    assert (block.id, block.lang, block.text) == ("doc.md:4", "bash", "heroku ps\n")
    assert block.skip_reason == "needs a cloud"


def test_markers_are_read() -> None:
    assert _one("<!-- docs-test: background -->\n```sh\nopsctl up\n```\n").background
    each = _one("<!-- docs-test: background, each line -->\n```sh\na\n# note\nb \\\n  c\n```\n")
    assert each.each_line and each.lines == ["a", "b c"]
    assert _one("<!-- docs-test: exits 1 -->\n```sh\nfalse\n```\n").expected_exit == 1
    assert _one("```sh\ntrue\n```\n").expected_exit == 0


def test_a_console_block_runs_its_prompt_lines() -> None:
    block = _one('```console\n$ opsctl status \\\n  --json\n{"a": 1}\n$ echo hi\nhi\n```\n')
    assert block.script == "opsctl status \\\n  --json\necho hi\n"


def test_an_indented_block_is_found() -> None:
    block = _one("1. Run it:\n\n    ```sh\n    opsctl up\n    ```\n")
    assert block.text == "opsctl up\n"


def test_guards_are_recognised() -> None:
    assert _one("```sh\nopsctl deploy-gate --canary\n```\n").is_guard
    assert _one("```sh\nopsctl check queue\n```\n").is_guard
    assert _one('```sh\ncurl -fsS "$APP_URL/api/production/queue/heartbeat"\n```\n').is_guard
    assert _one("```sh\ncurl -fsS localhost:8080/api/health/ready\n```\n").is_guard
    assert not _one("```sh\ncurl -fsS localhost:8080/api/openapi.json\n```\n").is_guard
    assert not _one("```text\nopsctl deploy-gate\n```\n").is_guard


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("```\nopsctl up\n```\n", "doc.md:1: say what the block holds"),
        ("```shell-session\n$ x\n```\n", "unknown block language 'shell-session'"),
        ("```sh\nopsctl up\n", "doc.md:1: a fenced block that is never closed"),
        ("<!-- docs-test: later -->\n```sh\nx\n```\n", "unknown docs-test marker 'later'"),
        ("<!-- docs-test: skip: -->\n```sh\nx\n```\n", "unknown docs-test marker 'skip:'"),
        ("<!-- docs-test: background -->\n```json\n{}\n```\n", "before a json block"),
        ("<!-- docs-test: exits 1 -->\n\nSome prose.\n", "doc.md:1: a docs-test marker without"),
        ("text <!-- docs-test: background --> more\n", "must be a line of its own"),
        ("<!-- docs-test: exits 1 -->\n", "a docs-test marker without a block"),
        (
            "<!-- docs-test: skip: later -->\n```sh\nopsctl deploy-gate\n```\n",
            "a guard must run",
        ),
    ],
)
def test_a_block_the_docs_tests_cannot_classify_is_an_error(text: str, message: str) -> None:
    with pytest.raises(ExtractError, match=re.escape(message)):
        parse(text, "doc.md")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    headings = re.findall(r"^#{1,6} (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("document", DOCS)
def test_every_link_inside_the_repository_leads_somewhere(document: str) -> None:
    source = REPO / document
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: outside the repository
        file_part, _, anchor = target.partition("#")
        linked = (source.parent / file_part).resolve() if file_part else source
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in _anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{document}: links to nowhere: {broken}"
