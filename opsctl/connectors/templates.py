"""Templates in definitions: ``{{config.x}}``, ``{{input.y}}``, ``{{credentials.z}}``.

One grammar for the validator (which names each variable a template uses) and the executor
(which renders them). A template names exactly one variable, ``{{namespace.name}}``, with
optional spaces inside the braces; there are no filters, defaults or nested paths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

NAMESPACES: Final = ("config", "input", "credentials")
"""What a template may name: the connection's config, the operation's input, the credential."""

CREDENTIAL_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "none": (),
    "api_key": ("api_key",),
    "basic": ("username", "password"),
    "bearer": ("token",),
    "oauth2": ("access_token",),
}
"""The ``credentials.*`` variables each auth type provides."""

_OPEN_OR_CLOSE = re.compile(r"\{\{|\}\}")
_BODY = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*")


@dataclass(frozen=True)
class TemplateRef:
    """One ``{{namespace.name}}`` in a string; ``start``/``end`` are offsets of the braces."""

    namespace: str
    name: str
    start: int
    end: int

    @property
    def variable(self) -> str:
        return f"{self.namespace}.{self.name}"


@dataclass(frozen=True)
class TemplateProblem:
    """A syntax mistake in a template string, at ``offset`` in that string."""

    offset: int
    message: str


class TemplateError(ValueError):
    """A template names a variable that has no value when rendering."""


def scan_template(text: str) -> tuple[list[TemplateRef], list[TemplateProblem]]:
    """Every template in ``text`` and every syntax problem (all of them, not the first)."""
    refs: list[TemplateRef] = []
    problems: list[TemplateProblem] = []
    open_at: int | None = None
    for match in _OPEN_OR_CLOSE.finditer(text):
        if match.group() == "{{":
            if open_at is not None:
                problems.append(TemplateProblem(open_at, "'{{' is not closed by '}}'"))
            open_at = match.start()
            continue
        if open_at is None:
            problems.append(TemplateProblem(match.start(), "'}}' has no opening '{{'"))
            continue
        body = text[open_at + 2 : match.start()]
        parsed = _BODY.fullmatch(body)
        if parsed is None:
            shown = json.dumps(body[:40])
            problems.append(
                TemplateProblem(
                    open_at,
                    f"template {{{{{shown[1:-1]}}}}} must name one variable as "
                    "{{namespace.name}}, e.g. {{input.id}}",
                )
            )
        else:
            refs.append(TemplateRef(parsed[1], parsed[2], open_at, match.end()))
        open_at = None
    if open_at is not None:
        problems.append(TemplateProblem(open_at, "'{{' is not closed by '}}'"))
    return refs, problems


def render(
    text: str,
    variables: Mapping[str, Mapping[str, Any]],
    *,
    encode: Callable[[str], str] | None = None,
) -> str:
    """Replace every template with its variable's text (``encode`` it, e.g. for a URL path).

    Raises :class:`TemplateError` naming the first variable without a value; the validator has
    already made sure every variable is a known one, so this means optional input was left out.
    """
    refs, problems = scan_template(text)
    if problems:
        raise TemplateError(problems[0].message)
    out: list[str] = []
    last = 0
    for ref in refs:
        value = _lookup(ref, variables)
        shown = _as_text(value)
        out.append(text[last : ref.start])
        out.append(encode(shown) if encode else shown)
        last = ref.end
    out.append(text[last:])
    return "".join(out)


MISSING: Final = object()
"""What :func:`render_value` returns for a lone template whose variable has no value."""


def render_value(value: Any, variables: Mapping[str, Mapping[str, Any]]) -> Any:
    """Render templates inside a JSON value (a query, headers or body).

    A string that is exactly one template takes the variable's own value (a number stays a
    number); when that variable is absent the result is :data:`MISSING`, and dict members and
    list items that render to it are left out, so optional input simply drops a parameter.
    """
    if isinstance(value, str):
        refs, _ = scan_template(value)
        if len(refs) == 1 and refs[0].start == 0 and refs[0].end == len(value):
            ref = refs[0]
            found = variables.get(ref.namespace, {})
            return found.get(ref.name, MISSING)
        return render(value, variables) if refs else value
    if isinstance(value, dict):
        rendered = {k: render_value(v, variables) for k, v in value.items()}
        return {k: v for k, v in rendered.items() if v is not MISSING}
    if isinstance(value, list):
        items = [render_value(v, variables) for v in value]
        return [v for v in items if v is not MISSING]
    return value


def _lookup(ref: TemplateRef, variables: Mapping[str, Mapping[str, Any]]) -> Any:
    found = variables.get(ref.namespace, {})
    if ref.name not in found:
        raise TemplateError(f"{{{{{ref.variable}}}}} has no value")
    return found[ref.name]


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
