"""What every command group shares: settings from the environment, JSON and table output."""

from __future__ import annotations

import json
import sys
from typing import Any

from opsctl.settings import Settings, load_settings

JSON_HELP = "Print machine-readable JSON instead of a table."


def settings_from_env() -> Settings:
    """The one Settings object of this CLI process."""
    return load_settings()


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()
