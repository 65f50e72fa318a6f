"""Fixtures for the executor tests: a local vendor, an HTTP session, credentials over a dict."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest

from opsctl.connectors.model import Definition
from opsctl.errors import ConnectionNeedsReauth
from tests.executor._vendor import Vendor


class DictCredentials:
    """A :class:`~opsctl.connectors.credentials.CredentialSource` over a dict: ``current`` is
    handed out; a refresh hands out ``fresh`` (once), or refuses as the vendor would."""

    def __init__(self, current: Mapping[str, str], fresh: Mapping[str, str] | None = None):
        self.current = dict(current)
        self.fresh = dict(fresh) if fresh is not None else None
        self.asked: list[str | None] = []
        self.rejected: list[dict[str, str]] = []

    async def credentials(
        self, connection_id: str | None, definition: Definition
    ) -> Mapping[str, str]:
        self.asked.append(connection_id)
        return self.current

    async def refreshed(
        self, connection_id: str | None, definition: Definition, rejected: Mapping[str, str]
    ) -> Mapping[str, str]:
        self.rejected.append(dict(rejected))
        if self.fresh is None:
            raise ConnectionNeedsReauth(
                f"connection {connection_id!r} of {definition.id} needs to be authorised again: "
                "the vendor refused the refresh token (invalid_grant)",
                connection_id=connection_id,
            )
        self.current, self.fresh = self.fresh, None
        return self.current


NO_CREDENTIALS = DictCredentials({})


class Sleeps:
    """Records the waits the executor asks for instead of waiting them out."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    server = await Vendor().start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
