"""Run :mod:`tests.limiter._proc` in real child processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def spawn(mode: str, args: dict[str, Any]) -> subprocess.Popen[str]:
    payload = {k: str(v) if isinstance(v, Path) else v for k, v in args.items()}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.limiter._proc", mode, json.dumps(payload)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(mode: str, args: dict[str, Any], timeout: float = 30) -> str:
    proc = spawn(mode, args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode in (0, -9), err
    return out
