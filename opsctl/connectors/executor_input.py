"""Checking an execution's input and a connection's config against their JSON Schemas.

Every problem is reported at once, each with the JSON pointer of the offending value. The
compiled validators are cached per definition digest, so checking costs microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from opsctl.connectors.model import Definition, Operation

_CACHE_LIMIT = 4096
_validators: dict[tuple[str, str], Draft202012Validator] = {}


@dataclass(frozen=True)
class InputProblem:
    """One way a value breaks its schema: where (a JSON pointer, ``""`` for the whole value)."""

    pointer: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message}

    def __str__(self) -> str:
        return f"{self.pointer or '(root)'}: {self.message}"


def input_problems(definition: Definition, operation: Operation, value: Any) -> list[InputProblem]:
    """Every way ``value`` breaks the operation's input schema (none: it may run)."""
    return _problems(definition, f"input:{operation.id}", operation.input_schema, value, "input")


def config_problems(definition: Definition, value: Any) -> list[InputProblem]:
    """Every way ``value`` breaks the definition's ``config_schema``."""
    return _problems(definition, "config", definition.config_schema, value, "config")


def describe_problems(what: str, problems: list[InputProblem]) -> str:
    """One sentence listing every problem: ``input does not match its schema: /id: …; …``."""
    return f"{what} does not match its schema: " + "; ".join(str(p) for p in problems)


def _problems(
    definition: Definition, key: str, schema: Mapping[str, Any], value: Any, what: str
) -> list[InputProblem]:
    if not isinstance(value, dict):
        return [InputProblem("", f"{what} must be a JSON object, not {_json_type(value)}")]
    if not schema:
        return []
    validator = _validator(definition, key, schema)
    found = [InputProblem(_pointer(error), error.message) for error in validator.iter_errors(value)]
    return sorted(found, key=lambda p: (p.pointer, p.message))


def _validator(definition: Definition, key: str, schema: Mapping[str, Any]) -> Draft202012Validator:
    cache_key = (definition.digest or definition.id, key)
    validator = _validators.get(cache_key)
    if validator is None:
        if len(_validators) >= _CACHE_LIMIT:
            _validators.clear()
        validator = Draft202012Validator(
            _plain(schema), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        _validators[cache_key] = validator
    return validator


def _plain(value: Any) -> Any:
    """The schema as plain dicts and lists (the model freezes mappings)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _pointer(error: ValidationError) -> str:
    return "".join(
        "/" + str(part).replace("~", "~0").replace("/", "~1") for part in error.absolute_path
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
