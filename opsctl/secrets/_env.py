"""The ``env`` secret provider: values from the environment the process was started with."""

from __future__ import annotations

import time
from collections.abc import Mapping

from opsctl.errors import SecretError, SecretNotFound
from opsctl.secrets import redaction
from opsctl.secrets._base import require_current


class EnvProvider:
    """Reads the ``environ`` mapping given at creation; read-only."""

    name = "env"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    async def get(self, name: str, *, stage: str | None = None) -> str:
        require_current(self.name, name, stage)
        value = self._environ.get(name)
        if value is None or value == "":
            raise SecretNotFound(
                f"environment variable {name} is not set",
                hint=f"set {name}, or point the reference at another provider",
            )
        redaction.register(value)
        return value

    async def put(self, name: str, value: str) -> None:
        raise SecretError(
            f"cannot store secret {name!r}: the env secret provider is read-only",
            hint="set SECRET_MANAGER_PROVIDER=file or aws to store secrets",
        )

    async def ping(self) -> float:
        started = time.perf_counter()
        len(self._environ)
        return time.perf_counter() - started

    async def close(self) -> None:
        return None
