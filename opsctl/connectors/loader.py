"""Load every definition under the ``DEFINITIONS_PATH`` folders into validated models.

Files are found by walking each folder for ``*.json`` (hidden files and folders skipped,
symbolic links to folders not followed); a path may also name one file. Two files declaring
one connector id is an error in the second file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from types import MappingProxyType

from opsctl.connectors._collect import show
from opsctl.connectors.findings import Finding, escape_controls
from opsctl.connectors.model import Definition
from opsctl.connectors.validator import FileReport, validate_file
from opsctl.errors import ConfigError


class DefinitionPathError(ConfigError):
    """A path given for definitions does not exist (exit code 2)."""


@dataclass(frozen=True)
class Catalog:
    """The outcome of loading: a report per file, and the valid definitions by id."""

    reports: tuple[FileReport, ...]
    definitions: Mapping[str, Definition]

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for r in self.reports for f in r.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_error)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.is_error)

    @property
    def invalid(self) -> tuple[FileReport, ...]:
        return tuple(r for r in self.reports if not r.ok)

    @property
    def ok(self) -> bool:
        return not self.invalid


def find_definition_files(paths: Iterable[Path]) -> list[Path]:
    """The definition files under ``paths``, each once, in a stable order.

    Raises :class:`DefinitionPathError` naming every path that does not exist.
    """
    paths = list(paths)
    missing = [p for p in paths if not p.exists()]
    if missing:
        names = ", ".join(str(p) for p in missing)
        raise DefinitionPathError(
            f"definition path{'s' if len(missing) > 1 else ''} not found: {names}",
            hint="give a definition file, or a folder of them as DEFINITIONS_PATH does",
        )
    found: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        candidates = [path] if not path.is_dir() else _walk(path)
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found


def _walk(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(
            Path(root) / name
            for name in sorted(files)
            if name.endswith(".json") and not name.startswith(".")
        )
    return out


def load_definitions(
    paths: Sequence[Path],
    *,
    allow_loopback_http: bool = True,
    today: date | None = None,
    display: Callable[[Path], str] = str,
) -> Catalog:
    """Validate every definition file under ``paths``; see :class:`Catalog`.

    ``allow_loopback_http`` must be ``False`` in production. Raises
    :class:`DefinitionPathError` when a path does not exist.
    """
    files = find_definition_files(paths)
    reports = [
        validate_file(
            path, display=display(path), allow_loopback_http=allow_loopback_http, today=today
        )
        for path in files
    ]
    return _catalog(reports)


def _catalog(reports: list[FileReport]) -> Catalog:
    owners: dict[str, str] = {}
    definitions: dict[str, Definition] = {}
    out: list[FileReport] = []
    for report in reports:
        connector_id = report.connector_id
        if connector_id is not None and connector_id in owners:
            duplicate = _duplicate_finding(report, owners[connector_id])
            report = replace(
                report,
                findings=tuple(sorted((*report.findings, duplicate), key=Finding.sort_key)),
                definition=None,
            )
        elif connector_id is not None:
            owners[connector_id] = report.file
        if report.definition is not None:
            definitions[report.definition.id] = report.definition
        out.append(report)
    return Catalog(tuple(out), MappingProxyType(definitions))


def _duplicate_finding(report: FileReport, first_file: str) -> Finding:
    line, column = report.id_location
    return Finding(
        report.file,
        line,
        column,
        "/id",
        "duplicate-connector-id",
        f"connector id {show(report.connector_id)} is already defined in "
        f"{escape_controls(first_file)}",
    )
