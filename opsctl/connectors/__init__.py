"""Connector definitions: the format v1 model, its JSON Schema and validator, and the loader.

The registry, the OAuth flows, the executor and the rate-limit derivation build on the typed
model in :mod:`opsctl.connectors.model`; nothing here imports a CLI or web framework.
"""

from __future__ import annotations

from opsctl.connectors._build import definition_from_json
from opsctl.connectors.findings import CODES, Finding, Severity
from opsctl.connectors.loader import (
    Catalog,
    DefinitionPathError,
    find_definition_files,
    load_definitions,
)
from opsctl.connectors.model import Definition, Operation, RateLimitPolicy
from opsctl.connectors.validator import FileReport, load_schema, validate_bytes, validate_file

__all__ = [
    "CODES",
    "Catalog",
    "Definition",
    "DefinitionPathError",
    "FileReport",
    "Finding",
    "Operation",
    "RateLimitPolicy",
    "Severity",
    "definition_from_json",
    "find_definition_files",
    "load_definitions",
    "load_schema",
    "validate_bytes",
    "validate_file",
]
