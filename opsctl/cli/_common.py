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


def with_resolved_secrets(settings: Settings) -> Settings:
    """The settings with ``OPSCTL_API_TOKEN`` resolved when it is a secret reference
    (``aws:prod/opsctl#api_token``); unchanged, and without I/O, when it is not."""
    if not settings.api_token_ref:
        return settings
    import asyncio

    from opsctl.secrets import create_provider, resolve_settings

    async def resolve() -> Settings:
        provider = create_provider(settings)
        try:
            return await resolve_settings(settings, provider)
        finally:
            await provider.close()

    return asyncio.run(resolve())


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()
