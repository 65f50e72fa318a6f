"""Fixtures: moto's Secrets Manager server as a real process over HTTP, and clean logging."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opsctl.secrets._aws import AwsProvider
from opsctl.secrets.redaction import forget_all
from tests._support import free_port

REGION = "us-east-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class MotoServer:
    """``python -m moto.server`` on a free port; ``env`` is added to its environment."""

    def __init__(self, log: Path, env: dict[str, str] | None = None) -> None:
        import os

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"moto server exited: {log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("moto server did not start within 30 s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the session; tests use unique secret names."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def secret_name() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def aws_provider(moto: MotoServer) -> AsyncIterator[Callable[..., AwsProvider]]:
    """Build AwsProvider instances pointed at moto with dummy credentials (closed afterwards)."""
    built: list[AwsProvider] = []

    def build(**kwargs: Any) -> AwsProvider:
        options: dict[str, Any] = {
            "region": REGION,
            "endpoint_url": moto.url,
            "credentials": DUMMY_CREDENTIALS,
        }
        options.update(kwargs)
        provider = AwsProvider(**options)
        built.append(provider)
        return provider

    yield build
    for provider in built:
        await provider.close()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Restore the root logger's handlers and level after a test that configures logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    forget_all()
