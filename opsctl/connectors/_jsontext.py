"""JSON text with the line and column of every value, addressed by JSON pointer.

``read_json`` decodes and parses a file's bytes and records where each value (and each
object key) starts, so a finding about ``/auth/scopes`` can name the line and column an editor
jumps to. Everything that stops a file from being JSON at all (not UTF-8, empty, nested too
deep for a definition, a syntax error) raises :class:`JsonTextError` with its position.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any

MAX_DEPTH = 64
"""Far deeper than any definition needs, far shallower than the parser's recursion limit."""

_STRING_OR_CONSTANT = re.compile(r'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"|(-?Infinity|NaN)')
_FRIENDLIER = {
    "Invalid control character at": "a string is not closed on its line, or holds a raw "
    "control character",
    "Unterminated string starting at": "a string is not closed",
    "Expecting property name enclosed in double quotes": "expected a key in double quotes "
    "(a trailing comma, or single quotes?)",
    "Extra data": "extra text after the JSON value",
}
_DEPTH_TOKENS = re.compile(r'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"|[\[\]{}]')
_TOKENS = re.compile(
    r'[ \t\n\r]*(?:("[^"\\]*+(?:\\.[^"\\]*+)*+")|([{}\[\],:])|(-?[0-9][0-9.eE+-]*|true|false|null))'
)


class JsonTextError(Exception):
    """The text cannot be read as JSON; ``code`` is the finding code it becomes."""

    def __init__(self, code: str, message: str, line: int = 1, column: int = 1):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column


def escape_token(token: str) -> str:
    """One JSON pointer reference token (RFC 6901): ``~`` → ``~0``, ``/`` → ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def join_pointer(base: str, *tokens: str | int) -> str:
    return base + "".join(f"/{escape_token(str(t))}" for t in tokens)


def parent_pointer(pointer: str) -> str:
    return pointer.rsplit("/", 1)[0] if pointer else ""


class JsonDocument:
    """A parsed JSON text and where each of its values starts.

    The positions are indexed on first use: a valid file without findings never pays for it.
    """

    def __init__(self, text: str, value: Any, *, has_duplicate_keys: bool = False):
        self.text = text
        self.value = value
        self.has_duplicate_keys = has_duplicate_keys
        self._values: dict[str, int] = {}
        self._keys: dict[str, int] = {}
        self._duplicates: list[tuple[str, int]] = []
        self._indexed = False
        self._line_starts: list[int] = []

    def _index(self) -> None:
        if not self._indexed:
            self._indexed = True
            _index(self.text, self._values, self._keys, self._duplicates)

    @property
    def values(self) -> dict[str, int]:
        """The offset of each value, by JSON pointer."""
        self._index()
        return self._values

    @property
    def keys(self) -> dict[str, int]:
        """The offset of each object member's key, by the member's JSON pointer."""
        self._index()
        return self._keys

    @property
    def duplicate_keys(self) -> list[tuple[str, int]]:
        """Members whose key repeats an earlier one in the same object: (pointer, offset)."""
        if not self.has_duplicate_keys:
            return []
        self._index()
        return self._duplicates

    def position(self, offset: int) -> tuple[int, int]:
        """``(line, column)``, both from 1, of a character offset into the text."""
        if not self._line_starts:
            self._line_starts = [0, *(m.end() for m in re.finditer("\n", self.text))]
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def locate(self, pointer: str, *, key: bool = False) -> tuple[int, int]:
        """Where the value at ``pointer`` starts (its key, with ``key=True``).

        A pointer to something absent (a missing key) falls back to its nearest present parent.
        """
        if key and pointer in self.keys:
            return self.position(self.keys[pointer])
        values = self.values
        probe = pointer
        while probe not in values and probe:
            probe = parent_pointer(probe)
        return self.position(values.get(probe, 0))


def read_json(data: bytes | str) -> JsonDocument:
    """Decode (UTF-8), parse and index ``data``; raises :class:`JsonTextError` with a position."""
    text = _decode(data) if isinstance(data, bytes) else data
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise JsonTextError("empty-file", "the file is empty; a definition is one JSON object")
    _check_depth(text)
    try:
        duplicates = _DuplicateWatch()
        value = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=duplicates.build
        )
    except json.JSONDecodeError as exc:
        message = _FRIENDLIER.get(exc.msg, exc.msg)
        raise JsonTextError(
            "invalid-json", f"invalid JSON: {message}", exc.lineno, exc.colno
        ) from None
    except RecursionError:
        raise JsonTextError(
            "too-deeply-nested", f"values are nested deeper than {MAX_DEPTH} levels"
        ) from None
    except _ConstantError as exc:
        line, column = _find_constant(text, exc.name)
        raise JsonTextError(
            "invalid-json", f"invalid JSON: {exc.name} is not a JSON number", line, column
        ) from None
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        message = str(exc).split(";")[0][:120]
        raise JsonTextError("invalid-json", f"invalid JSON: {message}") from None
    return JsonDocument(text, value, has_duplicate_keys=duplicates.seen)


class _DuplicateWatch:
    """An ``object_pairs_hook`` that notes whether any object repeats a key."""

    def __init__(self) -> None:
        self.seen = False

    def build(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        built = dict(pairs)
        if len(built) != len(pairs):
            self.seen = True
        return built


def _decode(data: bytes) -> str:
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start if nul < 0 else min(exc.start, nul)
        line, column = _position_of_byte(data, bad)
        raise JsonTextError(
            "not-text", "the file is not UTF-8 text (a binary file?)", line, column
        ) from None
    if nul >= 0:
        line, column = _position_of_byte(data, nul)
        raise JsonTextError("not-text", "the file holds NUL bytes (a binary file?)", line, column)
    return text


def _position_of_byte(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
    return line, column


class _ConstantError(ValueError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _reject_constant(name: str) -> Any:
    raise _ConstantError(name)


def _find_constant(text: str, name: str) -> tuple[int, int]:
    """Where ``NaN``/``Infinity`` first appears outside a string."""
    for match in _STRING_OR_CONSTANT.finditer(text):
        if match.group(1) == name:
            return JsonDocument(text, None).position(match.start(1))
    return 1, 1


def _check_depth(text: str) -> None:
    """Refuse deep nesting before the parser recurses into it (no RecursionError, ever)."""
    depth = 0
    for match in _DEPTH_TOKENS.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line, column = JsonDocument(text, None).position(match.start())
                raise JsonTextError(
                    "too-deeply-nested",
                    f"values are nested deeper than {MAX_DEPTH} levels",
                    line,
                    column,
                )
        elif char in "]}":
            depth -= 1


class _Frame:
    __slots__ = ("current", "expect_key", "index", "is_object", "pointer", "seen")

    def __init__(self, pointer: str, is_object: bool):
        self.pointer = pointer
        self.is_object = is_object
        self.expect_key = is_object
        self.index = 0
        self.current = ""
        self.seen: set[str] = set()


def _index(
    text: str,
    values: dict[str, int],
    keys: dict[str, int],
    duplicates: list[tuple[str, int]],
) -> None:
    """Record the offset of every value and key; the text is known to be valid JSON."""
    stack: list[_Frame] = []
    for match in _TOKENS.finditer(text):
        string, punct, _ = match.groups()
        start = match.start(1) if string else match.start(2) if punct else match.start(3)
        if punct in (",", ":"):
            if punct == ",":
                top = stack[-1]
                if top.is_object:
                    top.expect_key = True
                else:
                    top.index += 1
            continue
        if punct in ("}", "]"):
            stack.pop()
            continue
        top_or_none = stack[-1] if stack else None
        if top_or_none is not None and top_or_none.is_object and top_or_none.expect_key:
            key = string[1:-1] if "\\" not in string else json.loads(string)
            pointer = join_pointer(top_or_none.pointer, key)
            if key in top_or_none.seen:
                duplicates.append((pointer, start))
            top_or_none.seen.add(key)
            keys[pointer] = start
            top_or_none.current = pointer
            top_or_none.expect_key = False
            continue
        if top_or_none is None:
            pointer = ""
        elif top_or_none.is_object:
            pointer = top_or_none.current
        else:
            pointer = join_pointer(top_or_none.pointer, top_or_none.index)
        values[pointer] = start
        if punct in ("{", "["):
            stack.append(_Frame(pointer, punct == "{"))
