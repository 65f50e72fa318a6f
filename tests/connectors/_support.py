"""Helpers for the connector tests: the full example definition as a dict, and edits of it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ACME = Path(__file__).parent / "valid" / "acme.json"
_BASE: dict[str, Any] = json.loads(ACME.read_text())


def acme() -> dict[str, Any]:
    """A fresh copy of the full, valid example definition."""
    return copy.deepcopy(_BASE)


def write(folder: Path, name: str, document: Any) -> Path:
    path = folder / name
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=2))
    return path
