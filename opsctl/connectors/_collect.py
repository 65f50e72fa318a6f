"""The collector every check writes findings into: it turns pointers into line and column."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable

from opsctl.connectors._jsontext import JsonDocument
from opsctl.connectors.findings import CODES, Finding, escape_controls

_SHOW_LIMIT = 60


def show(value: object) -> str:
    """A value quoted for a message: JSON-style, shortened, control characters escaped."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    if len(text) > _SHOW_LIMIT:
        text = text[: _SHOW_LIMIT - 1] + "…"
    quoted = json.dumps(text, ensure_ascii=False) if isinstance(value, str) else text
    return escape_controls(quoted)


def brief(message: str) -> str:
    """A library's message for a finding: control characters escaped, at most 200 long."""
    text = escape_controls(message)
    return text if len(text) <= 200 else text[:199] + "…"


def did_you_mean(word: object, candidates: Iterable[str]) -> str | None:
    """``did you mean "scopes"?`` for the closest candidate, if any is close."""
    if not isinstance(word, str):
        return None
    options = [c for c in candidates if isinstance(c, str)]
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered and lowered[word.lower()] != word:
        match: str | None = lowered[word.lower()]
    else:
        close = difflib.get_close_matches(word, options, n=1, cutoff=0.65)
        match = close[0] if close else None
    return f"did you mean {show(match)}?" if match is not None else None


class Collector:
    """Findings for one file, each located in the source text by its JSON pointer."""

    def __init__(self, file: str, doc: JsonDocument | None = None):
        self.file = file
        self.doc = doc
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str, str]] = set()

    def add(
        self,
        code: str,
        pointer: str,
        message: str,
        *,
        hint: str | None = None,
        at_key: bool = False,
        offset_in_string: int | None = None,
    ) -> None:
        """Record a finding; ``at_key`` locates an object member's key rather than its value,
        ``offset_in_string`` a character inside a string value (a template)."""
        assert code in CODES, code
        key = (code, pointer, message)
        if key in self._seen:
            return
        self._seen.add(key)
        line, column = (1, 1)
        if self.doc is not None:
            line, column = self.doc.locate(pointer, key=at_key)
            if offset_in_string is not None and pointer in self.doc.values:
                start = self.doc.values[pointer]
                raw = self.doc.text[start + 1 : start + 1 + offset_in_string]
                if self.doc.text[start] == '"' and "\\" not in raw and "\n" not in raw:
                    column += 1 + offset_in_string
        self.findings.append(Finding(self.file, line, column, pointer, code, message, hint))

    def add_at(self, code: str, line: int, column: int, message: str) -> None:
        """A finding located by position alone (the text is not JSON)."""
        self.findings.append(Finding(self.file, line, column, "", code, message))

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self.findings)
