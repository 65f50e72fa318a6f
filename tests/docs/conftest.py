"""Fixtures of the docs tests: a reader's checkout, and the fleets the guards are run against."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs._shell import make_scratch


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A reader's checkout under a short path (Unix socket paths must fit in 107 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="opsdoc-", dir="/tmp"))
    (root / "harness").mkdir()
    make_scratch(root / "app")
    yield root
    shutil.rmtree(root, ignore_errors=True)
